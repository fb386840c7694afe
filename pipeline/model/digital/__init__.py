"""The keyed digital layer: source coding, channel coding, modulation and synchronisation of a compressed secret."""
