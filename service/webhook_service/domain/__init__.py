"""Pure rules of the service: names, filters, payloads, signing. No I/O here."""
