"""The paying client: signs calls, mines shares, keeps a balance."""
