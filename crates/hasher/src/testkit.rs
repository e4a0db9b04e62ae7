//! The conformance kit (filled in by the engine issue).
