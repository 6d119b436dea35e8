// SciStreamControl
