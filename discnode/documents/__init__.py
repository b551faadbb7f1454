"""The signed documents partners send each other about profiles, one module per family. Pure:
building a document and checking one that arrived; storing and delivering them is elsewhere."""
