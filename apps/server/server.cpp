// placeholder: the server library
