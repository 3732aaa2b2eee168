"""Tools that set the project up, run as scripts (`python tools/install.py ...`); training never imports them."""
