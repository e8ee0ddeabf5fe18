"""`helix bench`: decode TTL of real-size shapes with random weights, against the roofline."""
