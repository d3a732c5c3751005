package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// textWidth is where advice is wrapped in the text report.
const textWidth = 100

// WriteText writes the report for a person: one line per check with the
// verdict first and the names aligned, the advice indented under its
// finding, then a count of failures and warnings.
func (r Report) WriteText(w io.Writer) error {
	width := 0
	for _, f := range r.Checks {
		width = max(width, len(f.Name))
	}
	indent := strings.Repeat(" ", 4+2+width+2)
	var b strings.Builder
	counts := map[Status]int{}
	for _, f := range r.Checks {
		counts[f.Status]++
		fmt.Fprintf(&b, "%-4s  %-*s  %s\n", label(f.Status), width, f.Name, f.Summary)
		if f.Advice != "" {
			for _, line := range wrap(f.Advice, max(40, textWidth-len(indent))) {
				b.WriteString(indent + line + "\n")
			}
		}
	}
	warnings := "warnings"
	if counts[Warn] == 1 {
		warnings = "warning"
	}
	fmt.Fprintf(&b, "\n%d failed, %d %s, %d ok\n", counts[Fail], counts[Warn], warnings, counts[OK])
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as one JSON object:
// {"ok": bool, "checks": [{"name", "status", "summary", "advice", "details"}]}.
func (r Report) WriteJSON(w io.Writer) error {
	if r.Checks == nil {
		r.Checks = []Finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// label makes problems stand out in a column of "ok".
func label(s Status) string {
	switch s {
	case Warn:
		return "WARN"
	case Fail:
		return "FAIL"
	}
	return "ok"
}

// wrap breaks text into lines of at most width characters at spaces (a
// longer word, such as a path, gets a line of its own).
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) <= width:
			line += " " + word
		default:
			lines = append(lines, line)
			line = word
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
