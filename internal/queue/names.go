package queue

// ValidateNames checks c as queue.New will, defaults filled in, so that a bad stream, consumer
// or subject name stops start-up before any server is started or dialled.
func ValidateNames(c Config) error { return c.withDefaults().Validate() }

// RedactURLs hides the passwords and tokens of a comma-separated server list, for logs.
func RedactURLs(servers string) string { return redactURLs(servers) }
