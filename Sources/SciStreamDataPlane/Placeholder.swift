// SciStreamDataPlane
