"""optout-gateway: async SMS/email opt-out compliance gateway."""
