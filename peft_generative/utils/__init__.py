"""Small helpers shared by every part of the package; they import nothing from it."""
