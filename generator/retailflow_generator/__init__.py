"""RetailFlow retail data generator."""
