"""Customer care: enquiries, complaints and service requests, and what happened to each."""
