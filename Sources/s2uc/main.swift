print("s2uc")
