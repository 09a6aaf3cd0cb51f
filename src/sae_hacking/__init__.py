"""Tools for finding what sparse autoencoders get wrong: feature absorption and hedging."""
