print("s2cs")
