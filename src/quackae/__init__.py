"""quackae."""
