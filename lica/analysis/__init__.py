"""Analysis studies (toy problems and figures from the LICA paper)."""
