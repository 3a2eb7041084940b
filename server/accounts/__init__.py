"""Accounts and their service agreements, as the utility's customer system hands them over."""
