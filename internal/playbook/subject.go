package playbook

import (
	"strings"
	"unicode"
)

// checkFilter says what is wrong with a NATS subject filter, or "" when nothing is. The server
// would reject these on a subscription; here they fail at load with the line and the reason,
// which the server's own check (server.IsValidSubject) does not give. Matching is the
// server's: Playbook.MatchesSubject calls server.SubjectMatchesFilter.
func checkFilter(f string) string {
	if f == "" {
		return "is empty"
	}
	if strings.IndexFunc(f, unicode.IsSpace) >= 0 {
		return "contains whitespace"
	}
	tokens := strings.Split(f, ".")
	for i, t := range tokens {
		switch {
		case t == "":
			return "has an empty token"
		case t == ">" && i != len(tokens)-1:
			return `has ">" before the last token`
		case t != ">" && t != "*" && strings.ContainsAny(t, "*>"):
			return `has a wildcard inside a token; "*" and ">" must be whole tokens`
		}
	}
	return ""
}
