"""Reusable pieces of the app's pages: plots, tables, filter controls, the star panel."""
