package report

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/vigil-gw/vigil/governance/audit"
)

// SARClip is one clip of the wearer's footage as a subject access report
// lists it.
type SARClip struct {
	Camera, Clip, Site string
	Start, End         time.Time
	// Category is the retention category (non-evidential, evidential,
	// legal hold).
	Category string
	// Incidents are the incidents the clip is linked to.
	Incidents []string
	// Deleted says the footage no longer exists; the clip is still listed
	// because its accesses are.
	Deleted bool
}

// Key identifies the clip as audit records do.
func (c SARClip) Key() string { return c.Camera + "/" + c.Clip }

// SAR is a subject access report: the footage of one wearer and everyone who
// accessed it, which a wearer is entitled to ask for under data protection
// law.
type SAR struct {
	Wearer    string
	Generated time.Time
	Clips     []SARClip
	// Accesses are the audit records about the wearer's clips.
	Accesses []audit.Record
	// Location is the time zone times are shown in (nil: time.Local).
	Location *time.Location `json:"-"`
}

// sarView is what the renderers work from: clips and accesses in time order
// and the number of accesses per clip.
type sarView struct {
	SAR
	Counts map[string]int
}

func (s SAR) view() sarView {
	v := sarView{SAR: s, Counts: map[string]int{}}
	v.Clips = slices.Clone(s.Clips)
	slices.SortStableFunc(v.Clips, func(a, b SARClip) int {
		return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.Camera, b.Camera), cmp.Compare(a.Clip, b.Clip))
	})
	v.Accesses = slices.Clone(s.Accesses)
	slices.SortStableFunc(v.Accesses, func(a, b audit.Record) int {
		return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.Seq, b.Seq))
	})
	for _, c := range v.Clips {
		v.Counts[c.Key()] = 0
	}
	for _, a := range v.Accesses {
		v.Counts[a.Camera+"/"+a.Clip]++
	}
	return v
}

// Text writes the report as plain text, for a letter or an e-mail. Fields
// are cleaned of control and bidirectional-override characters, so a
// justification cannot forge lines or reorder what the reader sees.
func (s SAR) Text(w io.Writer) error {
	v := s.view()
	loc := location(s.Location)
	when := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.In(loc).Format("2006-01-02 15:04:05")
	}
	ew := &errWriter{w: w}
	ew.printf("Subject access report\n")
	ew.printf("Wearer: %s\n", clean(s.Wearer))
	ew.printf("Generated: %s (times in %s)\n\n", when(s.Generated), loc)

	ew.printf("Footage (%d clips)\n", len(v.Clips))
	if len(v.Clips) == 0 {
		ew.printf("  Vigil holds no footage of this wearer.\n")
	} else {
		tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "  Camera\tClip\tSite\tStart\tEnd\tCategory\tIncidents\tAccesses\tState\n")
		for _, c := range v.Clips {
			state := "kept"
			if c.Deleted {
				state = "deleted"
			}
			inc := make([]string, len(c.Incidents))
			for i, x := range c.Incidents {
				inc[i] = clean(x)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", clean(c.Camera), clean(c.Clip), clean(c.Site),
				when(c.Start), when(c.End), clean(c.Category), orDash(strings.Join(inc, ", ")), v.Counts[c.Key()], state)
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("report: sar text: %w", err)
		}
	}

	ew.printf("\nWho accessed it (%d records)\n", len(v.Accesses))
	if len(v.Accesses) == 0 {
		ew.printf("  Nobody has accessed this footage.\n")
	}
	for _, a := range v.Accesses {
		ew.printf("  %s  %s (%s)  %s  %s/%s", when(a.At), clean(a.Actor), clean(a.Role), clean(a.Action), clean(a.Camera), clean(a.Clip))
		if a.Incident != "" {
			ew.printf("  incident %s", clean(a.Incident))
		}
		ew.printf("  %s\n", clean(a.Outcome))
		if a.Why != "" {
			ew.printf("      why: %s\n", clean(a.Why))
		}
	}
	if ew.err != nil {
		return fmt.Errorf("report: sar text: %w", ew.err)
	}
	return nil
}

// HTML writes the report as one self-contained page.
func (s SAR) HTML(w io.Writer) error {
	if err := sarPage.Execute(w, s.view()); err != nil {
		return fmt.Errorf("report: sar html: %w", err)
	}
	return nil
}

// clean makes a field safe to print on one line of text: control characters
// (newlines included) and the invisible characters that reorder text (bidi
// overrides and isolates) are written as Go escapes, e.g. \n or \u202e.
func clean(s string) string {
	if !strings.ContainsFunc(s, unsafeRune) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unsafeRune(r) {
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || r == unicode.ReplacementChar ||
		(r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f ||
		r == 0x2028 || r == 0x2029
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// errWriter keeps the first write error, so Text checks once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }
