package gate

// ParseInstant exposes parseInstant to the external tests.
var ParseInstant = parseInstant
