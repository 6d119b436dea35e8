// SciStreamWire
