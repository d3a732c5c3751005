package monthly

import (
	"fmt"
	"html/template"
	"io"
	"strconv"
	"time"
)

// HTML writes the report as one self-contained page: inline CSS, charts as
// inline SVG, no scripts and no external assets, so it can be emailed or
// printed as it is. Every value goes through html/template, so a hostile
// site or team name is shown, not run.
func (r Report) HTML(w io.Writer) error {
	t, err := template.New("report").Funcs(template.FuncMap{
		"pct":  func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) + "%" },
		"dur":  fmtDur,
		"date": func(t time.Time) string { return t.Format("Mon 2 Jan") },
		"when": func(row Row) string {
			if row.Named {
				return row.Occurred.Format("2006-01-02 15:04")
			}
			return row.Occurred.Format("2006-01-02")
		},
		"yesno": func(b bool) string {
			if b {
				return "yes"
			}
			return "no"
		},
		"label": label,
	}).Parse(pageTemplate)
	if err != nil {
		return fmt.Errorf("monthly: parse html template: %w", err)
	}
	v := htmlView{R: r, Month: r.Start.Format("January 2006")}
	v.Scope = "all sites"
	if r.Site != "" {
		v.Scope = r.Site
	}
	if r.Summary != nil {
		v.Sections = append(v.Sections, newHTMLSection(*r.Summary, len(v.Sections)))
	}
	for _, s := range r.Sites {
		v.Sections = append(v.Sections, newHTMLSection(s, len(v.Sections)))
	}
	v.Legend = []svgBox{legendBox(Green), legendBox(Yellow), legendBox(Red), legendBox(Future)}
	if err := t.Execute(w, v); err != nil {
		return fmt.Errorf("monthly: write html: %w", err)
	}
	return nil
}

// fmtDur shows short intervals to a tenth of a second (ARC answer times)
// and long ones to the second (resolution times).
func fmtDur(d time.Duration) string {
	if d < time.Minute {
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
	}
	return d.Round(time.Second).String()
}

type htmlView struct {
	R        Report
	Month    string
	Scope    string
	Sections []htmlSection
	Legend   []svgBox
}

type htmlSection struct {
	S      Section
	ID     string // anchor; an index, never the site name
	Cross  crossSVG
	Types  barSVG
	Causes barSVG
}

type crossSVG struct {
	ID    string
	W, H  int
	Heads []svgText
	Boxes []svgBox
}

type svgText struct {
	X, Y int
	Text string
}

type svgBox struct {
	X, Y, Size       int
	NumX, NumY       int
	LetX, LetY       int
	Fill, Ink        string
	Day, Letter      string
	Title            string
	Dashed           bool
	Mark             Mark
	LegendDesc, Name string
}

type barSVG struct {
	ID    string
	Title string
	W, H  int
	Bars  []svgBar
}

type svgBar struct {
	Y, TextY, BarX, BarW, CountX int
	Label                        string
	N                            int
}

// Colours pass WCAG contrast for their ink; the letters carry the meaning
// for readers who cannot tell the colours apart.
func markStyle(m Mark) (fill, ink string) {
	switch m {
	case Green:
		return "#1e7b34", "#ffffff"
	case Yellow:
		return "#f2c200", "#000000"
	case Red:
		return "#b3261e", "#ffffff"
	}
	return "#ffffff", "#767676"
}

func legendBox(m Mark) svgBox {
	fill, ink := markStyle(m)
	letter := m.Letter()
	if letter == "" {
		letter = "blank"
	}
	return svgBox{Fill: fill, Ink: ink, Letter: letter, Name: m.String(), LegendDesc: m.Meaning(), Dashed: m == Future, Mark: m}
}

const (
	boxSize  = 44
	boxGap   = 4
	headH    = 18
	barRow   = 24
	barLabel = 150
	barArea  = 260
)

func newHTMLSection(s Section, i int) htmlSection {
	id := "s" + strconv.Itoa(i)
	h := htmlSection{S: s, ID: id}
	h.Cross = crossChart(s.Cross, id+"-cross")
	h.Types = barChart(s.ByType, id+"-types", "Incidents by type")
	h.Causes = barChart(s.ByCause, id+"-causes", "Incidents by cause")
	return h
}

// crossChart lays the month out as a calendar, Monday first, one box a day.
func crossChart(days []Day, id string) crossSVG {
	c := crossSVG{ID: id, W: 7*(boxSize+boxGap) + boxGap}
	for i, d := range []string{"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"} {
		c.Heads = append(c.Heads, svgText{X: boxGap + i*(boxSize+boxGap) + boxSize/2, Y: 13, Text: d})
	}
	if len(days) == 0 {
		c.H = headH
		return c
	}
	offset := (int(days[0].Date.Weekday()) + 6) % 7 // Monday = 0
	rows := 0
	for i, d := range days {
		cell := offset + i
		col, row := cell%7, cell/7
		rows = row + 1
		x := boxGap + col*(boxSize+boxGap)
		y := headH + row*(boxSize+boxGap)
		fill, ink := markStyle(d.Mark)
		title := fmt.Sprintf("%s: %s (%s)", d.Date.Format("Mon 2 January 2006"), d.Mark, d.Mark.Meaning())
		switch {
		case d.Incidents == 1:
			title += ", 1 incident"
		case d.Incidents > 1:
			title += fmt.Sprintf(", %d incidents", d.Incidents)
		}
		if d.Physical > 0 {
			title += fmt.Sprintf(", %d physical", d.Physical)
		}
		c.Boxes = append(c.Boxes, svgBox{
			X: x, Y: y, Size: boxSize,
			NumX: x + 4, NumY: y + 13,
			LetX: x + boxSize/2, LetY: y + boxSize - 8,
			Fill: fill, Ink: ink,
			Day: strconv.Itoa(d.Date.Day()), Letter: d.Mark.Letter(),
			Title: title, Dashed: d.Mark == Future, Mark: d.Mark,
		})
	}
	c.H = headH + rows*(boxSize+boxGap)
	return c
}

// barChart draws horizontal bars scaled to the largest count.
func barChart(counts []Count, id, title string) barSVG {
	b := barSVG{ID: id, Title: title, W: barLabel + barArea + 50, H: len(counts)*barRow + 4}
	top := 0
	for _, c := range counts {
		top = max(top, c.N)
	}
	for i, c := range counts {
		w := 0
		if top > 0 {
			w = c.N * barArea / top
		}
		y := 2 + i*barRow
		b.Bars = append(b.Bars, svgBar{Y: y + 3, TextY: y + 16, BarX: barLabel, BarW: w, CountX: barLabel + w + 6, Label: c.Label, N: c.N})
	}
	return b
}

const pageTemplate = `<!DOCTYPE html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<title>Violence prevention report – {{.Month}} – {{.Scope}}</title>
<style>
body{font-family:Arial,Helvetica,sans-serif;color:#212b32;max-width:60rem;margin:1rem auto;padding:0 1rem;line-height:1.4}
h1{font-size:1.6rem}h2{border-top:4px solid #005eb8;padding-top:.5rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{border:1px solid #aeb7bd;padding:.2rem .5rem;text-align:left}
td.n,th.n{text-align:right}.pass{color:#1e7b34;font-weight:bold}.fail{color:#b3261e;font-weight:bold}
.note{color:#4c6272;font-size:.9rem}.legend{list-style:none;padding:0}.legend li{margin:.2rem 0}
svg text{font-family:Arial,Helvetica,sans-serif}
</style>
</head>
<body>
<h1>Violence prevention and reduction: monthly report</h1>
<p><strong>{{.Month}}</strong>, {{.Scope}}. Days and months in {{.R.Location}}.
{{- if not .R.Generated.IsZero}} Generated {{.R.Generated.Format "2 January 2006 15:04 MST"}}.{{end}}</p>
<p>{{if .R.Named}}<strong>Named report:</strong> contains staff names and incident references (confidential incidents are never named). Handle as personal data.{{else}}<strong>Anonymised:</strong> no staff names, incident ids, crime reference numbers or times of day; incidents are numbered in order of occurrence.{{end}}</p>
<nav><ul>{{range .Sections}}<li><a href="#{{.ID}}">{{.S.Label}}</a></li>{{end}}</ul></nav>
{{range .Sections}}{{$s := .S}}
<section id="{{.ID}}">
<h2>{{$s.Label}}</h2>

<h3>Safety cross</h3>
<svg xmlns="http://www.w3.org/2000/svg" width="{{.Cross.W}}" height="{{.Cross.H}}" viewBox="0 0 {{.Cross.W}} {{.Cross.H}}" role="img" aria-labelledby="{{.Cross.ID}}-t">
<title id="{{.Cross.ID}}-t">Safety cross for {{$s.Label}}, {{$.Month}}</title>
{{range .Cross.Heads}}<text x="{{.X}}" y="{{.Y}}" font-size="11" text-anchor="middle" fill="#212b32">{{.Text}}</text>
{{end}}{{range .Cross.Boxes}}<g class="day mark-{{.Mark}}"><title>{{.Title}}</title><rect x="{{.X}}" y="{{.Y}}" width="{{.Size}}" height="{{.Size}}" fill="{{.Fill}}" stroke="#425563"{{if .Dashed}} stroke-dasharray="3 3"{{end}}/><text x="{{.NumX}}" y="{{.NumY}}" font-size="11" fill="{{.Ink}}">{{.Day}}</text><text x="{{.LetX}}" y="{{.LetY}}" font-size="16" font-weight="bold" text-anchor="middle" fill="{{.Ink}}">{{.Letter}}</text></g>
{{end}}</svg>
<ul class="legend">{{range $.Legend}}<li><svg xmlns="http://www.w3.org/2000/svg" width="18" height="18" aria-hidden="true"><rect x="1" y="1" width="16" height="16" fill="{{.Fill}}" stroke="#425563"{{if .Dashed}} stroke-dasharray="3 3"{{end}}/></svg> <strong>{{.Letter}}</strong> ({{.Name}}): {{.LegendDesc}}</li>{{end}}</ul>

<h3>Incidents by type and cause</h3>
<p>{{len $s.Incidents}} incident{{if ne (len $s.Incidents) 1}}s{{end}} in the month.</p>
{{template "bars" .Types}}
<table><caption>Incidents by type</caption><tr><th>Type</th><th class="n">Count</th></tr>{{range $s.ByType}}<tr><td>{{.Label}}</td><td class="n">{{.N}}</td></tr>{{end}}</table>
{{template "bars" .Causes}}
<table><caption>Incidents by cause</caption><tr><th>Cause</th><th class="n">Count</th></tr>{{range $s.ByCause}}<tr><td>{{.Label}}</td><td class="n">{{.N}}</td></tr>{{end}}</table>

<h3>P1 alarm response (duress and man-down)</h3>
{{with $s.Response}}
<p>{{.P1}} P1 alarm{{if ne .P1 1}}s{{end}} raised.{{if .ClockSkew}} {{.ClockSkew}} milestone{{if ne .ClockSkew 1}}s{{end}} stamped before the alarm was raised (measured as 0 s): check device and gateway clocks.{{end}}</p>
<table><tr><th>Interval</th><th class="n">Alarms</th><th class="n">Median (p50)</th><th class="n">p90</th></tr>
<tr><td>Raised → delivered to ARC</td><td class="n">{{.Delivered.N}}</td>{{template "lat" .Delivered}}</tr>
<tr><td>Raised → acknowledged by ARC</td><td class="n">{{.Acknowledged.N}}</td>{{template "lat" .Acknowledged}}</tr>
<tr><td>Raised → resolved</td><td class="n">{{.Resolved.N}}</td>{{template "lat" .Resolved}}</tr>
</table>
<p class="note">Percentiles use the nearest-rank method: the p-th percentile of n sorted times is the one at rank ⌈p × n / 100⌉, always an observed time.</p>
<table><caption>BS 8484 answer targets</caption><tr><th>Acknowledged within</th><th class="n">Alarms</th><th class="n">Share</th><th class="n">Target</th><th>Result</th></tr>
{{template "share" .Within10s}}{{template "share" .Within40s}}
</table>
<p class="note">Every P1 alarm raised counts; an alarm never acknowledged counts as not answered in time.</p>
{{end}}

<h3>Post-incident support</h3>
{{with $s.Support}}
<table><tr><th>Milestone</th><th class="n">In time</th><th class="n">%</th><th class="n">Not yet due</th></tr>
<tr><td>Welfare contact within 24 h of the alarm being resolved (or of the incident when no alarm)</td>{{template "comp" .Welfare}}</tr>
<tr><td>Defusing within 10 days of the incident</td>{{template "comp" .Defusing}}</tr>
<tr><td>Debrief within 14 days of the incident</td>{{template "comp" .Debrief}}</tr>
</table>
<p>Overdue open support tasks: <strong>{{.Overdue}}</strong>.</p>
{{end}}

<h3>Police involvement and outcomes</h3>
{{with $s.Outcomes}}
<p>Police involved: <strong>{{.Police}}</strong>. Crime references recorded: <strong>{{.CrimeRefs}}</strong>.</p>
{{if .ByOutcome}}<table><caption>Prosecution outcomes</caption><tr><th>Outcome</th><th class="n">Incidents</th></tr>{{range .ByOutcome}}<tr><td>{{.Label}}</td><td class="n">{{.N}}</td></tr>{{end}}</table>{{end}}
{{end}}

<h3>Incidents</h3>
{{if $s.Incidents}}<table><tr><th>Ref</th><th>Date</th>{{if $s.All}}<th>Site</th>{{end}}<th>Team</th><th>Type</th><th>Cause</th><th>Physical</th><th>Police</th><th>Crime ref</th><th>Outcome</th>{{if $.R.Named}}<th>Staff member</th>{{end}}</tr>
{{range $s.Incidents}}<tr><td>{{.Ref}}</td><td>{{when .}}</td>{{if $s.All}}<td>{{.Site}}</td>{{end}}<td>{{.Team}}</td><td>{{label .Type}}</td><td>{{label .Cause}}</td><td>{{yesno .Physical}}</td><td>{{yesno .Police}}</td><td>{{if .CrimeRef}}{{.CrimeRef}}{{else if .HasCrimeRef}}recorded{{end}}</td><td>{{if .Outcome}}{{label .Outcome}}{{end}}</td>{{if $.R.Named}}<td>{{if .Confidential}}confidential{{else}}{{.Wearer}}{{end}}</td>{{end}}</tr>
{{end}}</table>{{else}}<p>No incidents.</p>{{end}}
</section>
{{end}}
</body>
</html>
{{define "bars"}}<svg xmlns="http://www.w3.org/2000/svg" width="{{.W}}" height="{{.H}}" viewBox="0 0 {{.W}} {{.H}}" role="img" aria-labelledby="{{.ID}}-t">
<title id="{{.ID}}-t">{{.Title}}</title>
{{range .Bars}}<g><title>{{.Label}}: {{.N}}</title><text x="0" y="{{.TextY}}" font-size="12" fill="#212b32">{{.Label}}</text><rect x="{{.BarX}}" y="{{.Y}}" width="{{.BarW}}" height="16" fill="#005eb8"/><text x="{{.CountX}}" y="{{.TextY}}" font-size="12" fill="#212b32">{{.N}}</text></g>
{{end}}</svg>{{end}}
{{define "lat"}}{{if .N}}<td class="n">{{dur .P50}}</td><td class="n">{{dur .P90}}</td>{{else}}<td class="n">–</td><td class="n">–</td>{{end}}{{end}}
{{define "share"}}<tr><td>{{dur .Limit}}</td><td class="n">{{.Met}}/{{.Of}}</td><td class="n">{{if .Of}}{{pct .Percent}}{{else}}–{{end}}</td><td class="n">{{pct .Target}}</td><td class="{{.Verdict}}">{{.Verdict}}</td></tr>
{{end}}
{{define "comp"}}<td class="n">{{.Met}}/{{.Of}}</td><td class="n">{{if .Of}}{{pct .Percent}}{{else}}–{{end}}</td><td class="n">{{.NotDue}}</td>{{end}}
`
