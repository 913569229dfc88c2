"""HTTP routes: thin; the work lives in the services they call."""
