package exhibit

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-gw/vigil/evidence/ledger"
)

// utcNote is said wherever times are listed: police read UK clock time.
const utcNote = "Times are UTC; during British Summer Time, UK clock time is one hour ahead."

// ingestText says how a clip reached the gateway, from its entry body.
func ingestText(ingest string) string {
	switch ingest {
	case ledger.IngestTUS:
		return "uploaded by the camera over the network (tus resumable upload)"
	case ledger.IngestDock:
		return "copied from the camera by a docking station"
	}
	return "received by method " + strconv.Quote(ingest)
}

// clockText qualifies a received time taken while the gateway's clock was
// not synchronised (the entry body says so).
func clockText(unsynchronised bool) string {
	if unsynchronised {
		return " (the gateway's clock was not synchronised to a time source: this time may be wrong)"
	}
	return ""
}

// duration writes a recording length for a person: "5 min 0 s".
func duration(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	if h > 0 {
		return fmt.Sprintf("%d h %d min %d s", h, m, s)
	}
	return fmt.Sprintf("%d min %d s", m, s)
}

// stepLine is the heading of one continuity step; parseSteps reads it back.
var stepLine = regexp.MustCompile(`^Step ([0-9]+): ([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z) (.+)$`)

// continuityText is continuity/<camera>/<clip>.txt.
func continuityText(pp *prepared, c preparedClip) []byte {
	var b strings.Builder
	e := c.entry
	fmt.Fprintf(&b, "CONTINUITY RECORD: clip %s\n\n", c.key())
	kv := [][2]string{
		{"Exhibit", pp.ExhibitRef},
		{"Crime reference", pp.CrimeRef},
		{"File", c.dataPath()},
		{"Size", fmt.Sprintf("%d bytes", e.Size)},
		{"SHA-256", e.SHA256},
		{"Camera", e.Camera},
		{"Worn by", e.Wearer},
		{"Site", e.Site},
		{"Recorded", fmtTime(e.Start) + " to " + fmtTime(e.End) + " (" + duration(e.End.Sub(e.Start)) + ")"},
		{"Received", fmtTime(e.Received) + clockText(e.ClockUnsynchronised) + ", " + ingestText(e.Ingest)},
		{"Ledger entry", fmt.Sprintf("%d (entry hash %x)", c.Proof.Index, ledger.LeafHash(c.Body))},
	}
	for _, p := range kv {
		fmt.Fprintf(&b, "%-16s %s\n", p[0]+":", p[1])
	}
	b.WriteString("\n" + wrap("The steps below are the clip's history as recorded by the Vigil gateway, "+
		"oldest first, from capture to this export. "+utcNote, 76) + "\n")
	for i, s := range c.steps {
		fmt.Fprintf(&b, "\nStep %d: %s %s\n", i+1, fmtTime(s.At), s.What)
		for _, f := range [][2]string{{"Who", s.Who}, {"Role", s.Role}, {"Why", s.Why}, {"Detail", s.Detail}} {
			if f[1] != "" {
				fmt.Fprintf(&b, "  %-7s %s\n", f[0]+":", f[1])
			}
		}
	}
	return []byte(b.String())
}

// stepSummary is one step as parseSteps reads it.
type stepSummary struct {
	at, what string
}

// parseSteps reads the step headings of a continuity record.
func parseSteps(text []byte) []stepSummary {
	var out []stepSummary
	for _, line := range strings.Split(string(text), "\n") {
		if m := stepLine.FindStringSubmatch(line); m != nil {
			out = append(out, stepSummary{at: m[2], what: m[3]})
		}
	}
	return out
}

// summarise renders steps as one line: "captured, received, accessed ×2,
// exported (5 steps, <first> to <last>)".
func summarise(steps []stepSummary) string {
	if len(steps) == 0 {
		return "no continuity steps recorded"
	}
	var parts []string
	for i := 0; i < len(steps); {
		j := i
		for j < len(steps) && steps[j].what == steps[i].what {
			j++
		}
		if n := j - i; n > 1 {
			parts = append(parts, fmt.Sprintf("%s ×%d", steps[i].what, n))
		} else {
			parts = append(parts, steps[i].what)
		}
		i = j
	}
	return fmt.Sprintf("%s (%d steps, %s to %s)", strings.Join(parts, ", "), len(steps), steps[0].at, steps[len(steps)-1].at)
}

// WitnessDeclaration is the declaration of a witness statement under
// section 9(2)(b) of the Criminal Justice Act 1967, as it appears on the draft
// statement, with a blank for the page count.
const WitnessDeclaration = "This statement (consisting of ___ page(s) each signed by me) is true to the best of my knowledge and belief and I make it knowing that, if it is tendered in evidence, I shall be liable to prosecution if I have wilfully stated in it anything which I know to be false, or do not believe to be true."

// statementText is section9-statement-draft.txt: a draft for the producing
// witness, never a statement by itself.
func statementText(pp *prepared) []byte {
	var b strings.Builder
	banner := "*** DRAFT - NOT A STATEMENT UNTIL CHECKED, COMPLETED AND SIGNED BY THE WITNESS ***"
	b.WriteString(banner + "\n\n")
	b.WriteString(wrap("This draft was produced by the Vigil gateway from its records when evidence package "+
		pp.bag+" was made. It is not evidence of anything until the producing witness has checked every fact in it "+
		"against their own knowledge, corrected or removed anything they cannot confirm, completed the blanks and "+
		"signed it. Vigil does not sign statements.", 76))
	b.WriteString("\n\nWITNESS STATEMENT\n")
	b.WriteString("(Criminal Justice Act 1967, s.9; Magistrates' Courts Act 1980, s.5B;\nCriminal Procedure Rules, Part 16)\n\n")
	for _, kv := range [][2]string{
		{"Crime reference / URN", pp.CrimeRef},
		{"Exhibit reference", pp.ExhibitRef},
		{"Statement of", "______________________________ (producing witness)"},
		{"Age if under 18", "over 18"},
		{"Occupation", "______________________________"},
	} {
		fmt.Fprintf(&b, "%-23s %s\n", kv[0]+":", kv[1])
	}
	b.WriteString("\n" + wrap(WitnessDeclaration, 76) + "\n\n")
	b.WriteString("Signature: ______________________________   Date: ____________\n\n")

	cams := map[string]bool{}
	for _, c := range pp.clips {
		cams[c.Camera] = true
	}
	b.WriteString(wrap("I am employed by "+pp.SourceOrganization+" as ______________________________. "+
		"[WITNESS: say here what your role is and how you know about the body-worn camera system and its records.]", 76))
	b.WriteString("\n\n")
	b.WriteString(wrap(fmt.Sprintf("On %s I produced an evidence package named %s containing %d body-worn camera clip(s) from %d camera(s), "+
		"released to %s of %s under release request %s, which was requested by %s and approved by %s. "+
		"I produce this package as exhibit %s.",
		pp.Bagged.UTC().Format("2 January 2006"), pp.bag, len(pp.clips), len(cams), pp.Officer, pp.Force,
		pp.RequestID, pp.RequestedBy, pp.ApprovedBy, pp.ExhibitRef), 76))
	b.WriteString("\n\n" + wrap("The clips are listed below. "+utcNote, 76) + "\n")
	for i, c := range pp.clips {
		e := c.entry
		fmt.Fprintf(&b, "\n  %d. %s\n", i+1, c.dataPath())
		// Times and digests stay whole on their lines, to be read and
		// compared as they are.
		lines := []string{
			wrap(fmt.Sprintf("Camera %s, worn by %s, at %s.", e.Camera, orUnrecorded(e.Wearer), orUnrecorded(e.Site)), 70),
			fmt.Sprintf("Recorded from %s to %s", fmtTime(e.Start), fmtTime(e.End)),
			fmt.Sprintf("(%s). Size %d bytes.", duration(e.End.Sub(e.Start)), e.Size),
			"SHA-256 " + e.SHA256,
			wrap(fmt.Sprintf("Received by the gateway at %s%s, %s; ledger entry %d.", fmtTime(e.Received), clockText(e.ClockUnsynchronised), ingestText(e.Ingest), c.Proof.Index), 70),
		}
		for _, l := range lines {
			b.WriteString(indent(l, "     ") + "\n")
		}
	}
	b.WriteString("\nHow the footage was captured and kept:\n\n")
	b.WriteString(wrap("Each clip was recorded by the body-worn camera named above and transferred to the Vigil gateway as stated. "+
		"On arrival the gateway computed the SHA-256 digest of the clip's bytes, compared it with the digest the camera declared, "+
		"and recorded the clip as an entry in its evidence ledger. The ledger links each camera's entries in a hash chain and "+
		"combines all entries in a Merkle tree (RFC 6962) whose root the gateway signs at intervals; checkpoint.txt in the package "+
		"is such a signed root, and the files in proofs/ show that each clip's entry is in it. The files in data/ are the original "+
		"files as received from the cameras, byte for byte: they have not been edited, converted or transcoded. The recorded "+
		"history of each clip, including every access with the person, their role and the reason given, is in continuity/. "+
		"In summary:", 76))
	b.WriteString("\n\n")
	for _, c := range pp.clips {
		var steps []stepSummary
		for _, s := range c.steps {
			steps = append(steps, stepSummary{at: fmtTime(s.At), what: s.What})
		}
		b.WriteString("  - " + indent(wrap(c.dataPath()+": "+summarise(steps), 72), "    ")[4:] + "\n")
	}
	b.WriteString("\n" + wrap("Anyone can check that a file is the original by computing its SHA-256 digest (for example with sha256sum) "+
		"and comparing it with the digest above; README.txt in the package explains how to check the package as a whole.", 76))
	b.WriteString("\n\n" + wrap("[WITNESS: add from your own knowledge anything about the operation of the cameras and the gateway "+
		"that bears on the reliability of the recordings, and delete anything above that you cannot confirm.]", 76))
	b.WriteString("\n\nSignature: ______________________________   Date: ____________\n\n")
	b.WriteString(banner + "\n")
	return []byte(b.String())
}

func orUnrecorded(s string) string {
	if s == "" {
		return "(not recorded)"
	}
	return s
}

// wrap breaks text into lines of at most width bytes at spaces (a longer
// word stays whole).
func wrap(s string, width int) string {
	var b strings.Builder
	n := 0
	for _, w := range strings.Fields(s) {
		switch {
		case n == 0:
		case n+1+len(w) > width:
			b.WriteByte('\n')
			n = 0
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
