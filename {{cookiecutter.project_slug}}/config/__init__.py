"""Global paths, device selection and the experiment config."""
