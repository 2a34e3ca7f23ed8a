"""Step 05: authentication, ownership and least privilege: the chapter the article never wrote."""
