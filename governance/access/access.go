// Package access decides who may do what through Vigil's API, and keeps the
// people and credentials those decisions are about.
//
// People are local users, each with one role. The roles separate duties: the
// people who run the gateway (admin) and watch alarms (operator, supervisor)
// never see footage; investigators see only the footage of incidents
// assigned to them; information-governance officers audit, hold and release
// evidence but do not watch it; a wearer sees only their own footage. The
// whole policy is one table, roleTable, so that it can be read and reviewed
// in one place.
//
// Users prove who they are with a password (hashed with argon2id) that opens
// a web session, or with an API token for scripts. Token and session secrets
// are shown once and stored only as SHA-256 hashes, so a copy of the state
// directory does not let anyone in. Everything lives in SQLite tables (prefix
// access_) in the governance database, which the CLI writes while the gateway
// runs; nothing is cached, so a disabled user or a revoked token is refused
// on the next request.
package access

import "slices"

// Role is what a user is trusted with. Roles are not ranked: each grants its
// own set of permissions (see roleTable).
type Role string

// The roles.
const (
	// Operator is control-room staff: they see and act on alerts.
	Operator Role = "operator"
	// Supervisor is a team lead: alerts, devices, quarantine and routes, and
	// assigning incidents to investigators. No footage.
	Supervisor Role = "supervisor"
	// Investigator looks into incidents assigned to them: footage, retention,
	// holds and release requests, scoped to those incidents.
	Investigator Role = "investigator"
	// IGOfficer is the information-governance officer: audit, approving
	// releases, holds and retention across all evidence, subject access
	// reports. Sees clip metadata but never the footage itself.
	IGOfficer Role = "ig_officer"
	// Admin runs the gateway: devices and users. No footage, no clip metadata.
	Admin Role = "admin"
	// Wearer is a member of staff who wears a camera: their own footage only.
	// A wearer user is linked to the device wearer name in the registry.
	Wearer Role = "wearer"
)

// Permission is one thing the API lets a caller do.
type Permission string

// Permissions.
const (
	ReadAlerts   Permission = "read_alerts"
	ActOnAlerts  Permission = "act_on_alerts" // acknowledge, note, resolve
	ReadDevices  Permission = "read_devices"
	ReadRejected Permission = "read_rejected" // quarantined messages may hold device payloads
	ReadRoutes   Permission = "read_routes"
	// ReadEvidenceStatus shows the footage backlog and checkpoints: counts,
	// never footage or who is in it.
	ReadEvidenceStatus Permission = "read_evidence_status"
	// ManageDevices registers and retires buttons and cameras.
	ManageDevices Permission = "manage_devices"
	// ManageUsers adds and disables users and issues their tokens.
	ManageUsers Permission = "manage_users"
	// SearchClips lists clip metadata (camera, times, incident), not footage.
	SearchClips Permission = "search_clips"
	// ViewFootage gets a presigned link to the footage itself.
	ViewFootage Permission = "view_footage"
	// AssignIncidents assigns incidents to investigators, which is what an
	// investigator's ScopeAssigned follows.
	AssignIncidents Permission = "assign_incidents"
	// CloseIncident marks an incident's evidence released, starting its
	// post-release retention period.
	CloseIncident Permission = "close_incident"
	// ExtendRetention keeps footage longer (never shorter).
	ExtendRetention Permission = "extend_retention"
	// SetLegalHold places a legal hold.
	SetLegalHold Permission = "set_legal_hold"
	// LiftLegalHold lifts one: deliberately not the same people who set them.
	LiftLegalHold Permission = "lift_legal_hold"
	// RequestRelease asks for an evidence package to be released to police.
	RequestRelease Permission = "request_release"
	// ApproveRelease approves a request made by someone else.
	ApproveRelease Permission = "approve_release"
	// ExportRelease builds the approved evidence package.
	ExportRelease Permission = "export_release"
	// ReadAudit reads and verifies the audit trail.
	ReadAudit Permission = "read_audit"
	// SubjectAccess produces a subject access request (SAR) report.
	SubjectAccess Permission = "subject_access"
	// ReportIncident records an incident that raised no alarm (the console's
	// quick form). Wearers report their own; reporting must take seconds, so
	// anyone in the control room may do it for them.
	ReportIncident Permission = "report_incident"
	// ReadIncidents reads incident records and their support plans.
	ReadIncidents Permission = "read_incidents"
	// ManageIncidents classifies incidents and completes support-plan steps.
	ManageIncidents Permission = "manage_incidents"
	// ReadReports produces the monthly violence-prevention report
	// (anonymised by default; the named one also needs ReadIncidents in
	// ScopeAll, since it shows what the incident records show).
	ReadReports Permission = "read_reports"
)

// Scope is how much of what a permission covers a role may reach. Scopes
// are ordered: a larger scope includes the smaller ones.
type Scope uint8

// Scopes, narrowest first.
const (
	// ScopeNone refuses.
	ScopeNone Scope = iota
	// ScopeOwn covers only footage whose wearer is the caller's linked wearer
	// (Principal.Wearer). An empty wearer matches nothing.
	ScopeOwn
	// ScopeAssigned covers only footage of incidents assigned to the caller
	// (Principal.Name).
	ScopeAssigned
	// ScopeAll covers everything.
	ScopeAll
)

// String names the scope as the API shows it.
func (s Scope) String() string {
	switch s {
	case ScopeNone:
		return "none"
	case ScopeOwn:
		return "own"
	case ScopeAssigned:
		return "assigned"
	case ScopeAll:
		return "all"
	}
	return "invalid"
}

// MarshalText makes scopes readable in JSON.
func (s Scope) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// roleTable is the separation of duties: role → permission → scope. A
// permission missing from a role's row is refused. It is never written after
// initialisation; changing who may do what means changing this table (and
// its table test, which lists every role against every permission).
var roleTable = map[Role]map[Permission]Scope{
	Operator: {
		ReadAlerts: ScopeAll, ActOnAlerts: ScopeAll,
		ReportIncident: ScopeAll,
	},
	// Supervisors are line managers: they run the support plans.
	Supervisor: {
		ReadAlerts: ScopeAll, ActOnAlerts: ScopeAll,
		ReadDevices: ScopeAll, ReadRejected: ScopeAll, ReadRoutes: ScopeAll, ReadEvidenceStatus: ScopeAll,
		AssignIncidents: ScopeAll,
		ReportIncident:  ScopeAll, ReadIncidents: ScopeAll, ManageIncidents: ScopeAll, ReadReports: ScopeAll,
	},
	Admin: {
		ReadAlerts: ScopeAll, ActOnAlerts: ScopeAll,
		ReadDevices: ScopeAll, ReadRejected: ScopeAll, ReadRoutes: ScopeAll, ReadEvidenceStatus: ScopeAll,
		ManageDevices: ScopeAll, ManageUsers: ScopeAll,
	},
	Investigator: {
		ReadAlerts:  ScopeAll,
		SearchClips: ScopeAssigned, ViewFootage: ScopeAssigned,
		ExtendRetention: ScopeAssigned, SetLegalHold: ScopeAssigned, CloseIncident: ScopeAssigned,
		RequestRelease: ScopeAssigned, ExportRelease: ScopeAssigned,
	},
	IGOfficer: {
		ReadAudit: ScopeAll, ApproveRelease: ScopeAll, ExportRelease: ScopeAll,
		SetLegalHold: ScopeAll, LiftLegalHold: ScopeAll, ExtendRetention: ScopeAll,
		SearchClips: ScopeAll, SubjectAccess: ScopeAll,
		ReadEvidenceStatus: ScopeAll, AssignIncidents: ScopeAll, CloseIncident: ScopeAll,
		ReportIncident: ScopeAll, ReadIncidents: ScopeAll, ManageIncidents: ScopeAll, ReadReports: ScopeAll,
	},
	Wearer: {
		SearchClips: ScopeOwn, ViewFootage: ScopeOwn, SubjectAccess: ScopeOwn,
		ReportIncident: ScopeOwn, ReadIncidents: ScopeOwn,
	},
}

// Roles lists every role, in a stable order for messages and listings.
func Roles() []Role {
	return []Role{Operator, Supervisor, Investigator, IGOfficer, Admin, Wearer}
}

// Permissions lists every permission, in a stable order.
func Permissions() []Permission {
	return []Permission{ReadAlerts, ActOnAlerts, ReadDevices, ReadRejected, ReadRoutes, ReadEvidenceStatus,
		ManageDevices, ManageUsers, SearchClips, ViewFootage, AssignIncidents, CloseIncident,
		ExtendRetention, SetLegalHold, LiftLegalHold, RequestRelease, ApproveRelease, ExportRelease,
		ReadAudit, SubjectAccess, ReportIncident, ReadIncidents, ManageIncidents, ReadReports}
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return slices.Contains(Roles(), r) }

// Scope returns how far role r may use p. Unknown roles and permissions get
// ScopeNone.
func (r Role) Scope(p Permission) Scope { return roleTable[r][p] }

// Allows reports whether role r grants p in any scope. Callers of a scoped
// permission must also apply Scope to what they return.
func (r Role) Allows(p Permission) bool { return r.Scope(p) != ScopeNone }

// Principal is who is calling: the user behind a token or a session.
type Principal struct {
	Name    string // the user's name: recorded on everything they do
	Role    Role
	Wearer  string // the linked device wearer name, for wearer users
	Via     string // ViaToken or ViaSession
	TokenID string // the token's ID when Via is ViaToken
}

// How a principal authenticated.
const (
	ViaToken   = "token"
	ViaSession = "session"
)

// Scope returns how far the principal's role may use p.
func (p Principal) Scope(perm Permission) Scope { return p.Role.Scope(perm) }
