"""Auctions: live auctions with gapless bid sequences, anti-sniping, closing timer, WatchAuction and
BidStream."""
