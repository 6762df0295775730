"""Front doors: each translates its wire format onto the application and back, nothing more."""
