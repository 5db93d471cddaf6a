"""notifications: tells people what happened to their orders, payments and auctions (e-mail, SMS)."""
