"""One module per revision; a package so that a wheel install ships them."""
