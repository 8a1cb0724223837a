package event

import (
	"net/netip"
	"strings"
)

// UserType classifies a user name: "ip", "temp" (temporary accounts, named
// like "~2025-12345-6"), "named", or "" for an empty (redacted) name.
func UserType(name string) string {
	switch {
	case name == "":
		return ""
	case strings.HasPrefix(name, "~"):
		return "temp"
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return "ip"
	}
	return "named"
}
