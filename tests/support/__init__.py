"""Shared test stand-ins (fakes, emulators, server fixtures). Each names what it stands in for."""
