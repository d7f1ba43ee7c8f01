package main

// Names as vCenter keeps them. ManagedEntity.name escapes three characters in the names it returns:
// "/" as %2f, "\" as %5c and "%" as %25, unless the "%" already starts one of these escape sequences
// (vSphere API reference, ManagedEntity.name). Everything else (quotes, "&", "<", unicode, RTL marks)
// is kept as given. The lab stores a VM's name escaped so, and uses the escaped name for its files, as
// vCenter does for the VM's folder: a name holding "/" never becomes a path.

import "strings"

// escapes are the sequences ManagedEntity.name uses, lower case as vCenter returns them.
var escapes = []struct{ raw, seq string }{{"%", "%25"}, {"/", "%2f"}, {"\\", "%5c"}}

// vcenterName is name as ManagedEntity.name returns it.
func vcenterName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '%' && isEscapeSequence(name[i:]):
			b.WriteString(strings.ToLower(name[i : i+3]))
			i += 2
		case c == '%':
			b.WriteString("%25")
		case c == '/':
			b.WriteString("%2f")
		case c == '\\':
			b.WriteString("%5c")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// isEscapeSequence tells whether s starts with one of the escape sequences vCenter keeps as given.
func isEscapeSequence(s string) bool {
	if len(s) < 3 {
		return false
	}
	seq := strings.ToLower(s[:3])
	for _, e := range escapes {
		if seq == e.seq {
			return true
		}
	}
	return false
}
