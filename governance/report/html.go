package report

import (
	"fmt"
	"html/template"
	"io"
	"time"
)

// style is shared by both pages: they must stand alone (sent by e-mail,
// attached to a case file), so nothing is loaded from elsewhere.
const style = `
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { margin-bottom: 0.2em; }
p.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
thead th { background: #eee; position: sticky; top: 0; }
tr.flagged td { background: #fff6e0; }
tr.deleted td { color: #777; text-decoration: line-through; }
td.why { max-width: 28em; white-space: pre-wrap; overflow-wrap: anywhere; }
td.detail { max-width: 22em; white-space: pre-wrap; overflow-wrap: anywhere; }
td.hash { font-family: monospace; font-size: 0.8em; }
.flag { display: inline-block; border-radius: 0.3em; padding: 0 0.35em; margin: 0.1em 0; font-size: 0.85em; font-weight: 600; white-space: nowrap; }
.flag-no_incident { background: #ffd6a5; }
.flag-out_of_hours { background: #cfe2ff; }
.flag-bulk { background: #f8b4b4; }
.flag-refused { background: #e0c3fc; }
`

// funcs returns the template helpers; times are formatted with the location
// the data carries, so a page never uses the server's zone by accident.
func funcs() template.FuncMap {
	return template.FuncMap{
		"when": func(t time.Time, loc *time.Location) string {
			if t.IsZero() {
				return ""
			}
			return t.In(location(loc)).Format("2006-01-02 15:04:05 MST")
		},
		"period": period,
		"flags":  AllFlags,
		"zone":   func(loc *time.Location) string { return location(loc).String() },
	}
}

// period describes [from, to) for a heading.
func period(from, to time.Time, loc *time.Location) string {
	f := func(t time.Time) string { return t.In(location(loc)).Format("2006-01-02 15:04 MST") }
	switch {
	case from.IsZero() && to.IsZero():
		return "all records"
	case from.IsZero():
		return "before " + f(to)
	case to.IsZero():
		return "from " + f(from)
	}
	return fmt.Sprintf("from %s to %s", f(from), f(to))
}

// reportPage is the IG report. html/template escapes every field by
// context: a justification containing markup shows as text.
var reportPage = template.Must(template.New("report").Funcs(funcs()).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Vigil audit report</title>
<style>` + style + `</style>
</head>
<body>
<h1>Audit report</h1>
<p class="meta">{{period .From .To .Location}} · selection: {{if .Filter}}{{.Filter}}{{else}}none{{end}} · times in {{zone .Location}}</p>

<h2>Summary</h2>
<table class="summary">
<tr><th>Records</th><td>{{len .Rows}}</td></tr>
{{- range flags}}
<tr><th><span class="flag flag-{{.}}">{{.Label}}</span></th><td>{{index $.Counts .}}</td></tr>
{{- end}}
<tr><th>Clip deletions</th><td>{{len .Deletions}}</td></tr>
</table>

<h2>Records</h2>
{{if .Rows -}}
<table class="rows">
<thead><tr><th>Seq</th><th>Time</th><th>Who</th><th>Role</th><th>Action</th><th>Camera</th><th>Clip</th><th>Incident</th><th>Release</th><th>Why</th><th>From</th><th>Outcome</th><th>Detail</th><th>Flags</th></tr></thead>
<tbody>
{{- range .Rows}}
<tr{{if .Flags}} class="flagged"{{end}}><td>{{.Seq}}</td><td>{{when .At $.Location}}</td><td>{{.Actor}}</td><td>{{.Role}}</td><td>{{.Action}}</td><td>{{.Camera}}</td><td>{{.Clip}}</td><td>{{.Incident}}</td><td>{{.Release}}</td><td class="why">{{.Why}}</td><td>{{.From}}</td><td>{{.Outcome}}</td><td class="detail">{{.Detail}}</td><td>{{range .Flags}}<span class="flag flag-{{.}}">{{.Label}}</span> {{end}}</td></tr>
{{- end}}
</tbody>
</table>
{{- else -}}
<p>No records in this period.</p>
{{- end}}

<h2>Deletions</h2>
{{if .Deletions -}}
<table class="deletions">
<thead><tr><th>Seq</th><th>Time</th><th>Who</th><th>Camera</th><th>Clip</th><th>Why</th><th>Outcome</th><th>Detail</th></tr></thead>
<tbody>
{{- range .Deletions}}
<tr><td>{{.Seq}}</td><td>{{when .At $.Location}}</td><td>{{.Actor}}</td><td>{{.Camera}}</td><td>{{.Clip}}</td><td class="why">{{.Why}}</td><td>{{.Outcome}}</td><td class="detail">{{.Detail}}</td></tr>
{{- end}}
</tbody>
</table>
{{- else -}}
<p>No clip was deleted in this period.</p>
{{- end}}
</body>
</html>
`))

// HTML writes the report as one self-contained page: a summary of flag
// counts, every record with its flags highlighted, and the deletions.
func (r Report) HTML(w io.Writer) error {
	if err := reportPage.Execute(w, r); err != nil {
		return fmt.Errorf("report: html: %w", err)
	}
	return nil
}

// sarPage is the subject access report.
var sarPage = template.Must(template.New("sar").Funcs(funcs()).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Subject access report</title>
<style>` + style + `</style>
</head>
<body>
<h1>Subject access report</h1>
<p class="meta">Wearer: {{.Wearer}} · generated {{when .Generated .Location}} · times in {{zone .Location}}</p>

<h2>Footage ({{len .Clips}} clips)</h2>
{{if .Clips -}}
<table class="clips">
<thead><tr><th>Camera</th><th>Clip</th><th>Site</th><th>Start</th><th>End</th><th>Category</th><th>Incidents</th><th>Accesses</th><th>State</th></tr></thead>
<tbody>
{{- range .Clips}}
<tr{{if .Deleted}} class="deleted"{{end}}><td>{{.Camera}}</td><td>{{.Clip}}</td><td>{{.Site}}</td><td>{{when .Start $.Location}}</td><td>{{when .End $.Location}}</td><td>{{.Category}}</td><td>{{range $i, $x := .Incidents}}{{if $i}}, {{end}}{{$x}}{{end}}</td><td>{{index $.Counts .Key}}</td><td>{{if .Deleted}}deleted{{else}}kept{{end}}</td></tr>
{{- end}}
</tbody>
</table>
{{- else -}}
<p>Vigil holds no footage of this wearer.</p>
{{- end}}

<h2>Who accessed it ({{len .Accesses}} records)</h2>
{{if .Accesses -}}
<table class="accesses">
<thead><tr><th>Time</th><th>Who</th><th>Role</th><th>Action</th><th>Camera</th><th>Clip</th><th>Incident</th><th>Why</th><th>Outcome</th></tr></thead>
<tbody>
{{- range .Accesses}}
<tr><td>{{when .At $.Location}}</td><td>{{.Actor}}</td><td>{{.Role}}</td><td>{{.Action}}</td><td>{{.Camera}}</td><td>{{.Clip}}</td><td>{{.Incident}}</td><td class="why">{{.Why}}</td><td>{{.Outcome}}</td></tr>
{{- end}}
</tbody>
</table>
{{- else -}}
<p>Nobody has accessed this footage.</p>
{{- end}}
</body>
</html>
`))
