"""The app's pages; each is a module with `main(engine)` so tests can pass a small engine."""
