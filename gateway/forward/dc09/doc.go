// Package dc09 forwards alerts to an Alarm Receiving Centre (ARC) with the
// SIA DC-09 IP event-reporting protocol over TCP (or TLS), and provides a real
// DC-09 receiver for integration tests, benchmarks and demonstrations.
//
// A frame on the wire is
//
//	<LF> CRC LEN "ID" SEQ [Rrcvr] Lpref #acct [data] [xdata]... [_HH:MM:SS,MM-DD-YYYY] <CR>
//
// where CRC is CRC-16/ARC and LEN the length of the bytes from the opening
// quote up to, not including, <CR>. Bodies are Ademco Contact ID ("ADM-CID",
// the default) or SIA DC-03 codes ("SIA-DCS"). Frames may be encrypted with
// AES-CBC (128, 192 or 256-bit key, all-zero IV); the ID then gets a leading
// '*' and everything after the data's opening '[' is hex ciphertext of
// pad|data][xdata]..._timestamp, where pad is 1–16 random bytes that are never
// '|', '[' or ']' and the '|' ends the pad (ANSI/SIA DC-09-2013 §5.4.4).
//
// # Extended data
//
// Alerts carry these xdata fields, each in its own brackets:
//
//   - [H<HH:MM:SS,MM-DD-YYYY>] "time of occurrence": when the event happened
//     (Message.Time, UTC). The frame's own _timestamp is the send time, which is
//     what receivers check against their clock (they NAK frames outside a window
//     of about ±20 s), so a retried alarm keeps its original time here. The H
//     field's meaning ("time that event occurred, may be different than message
//     time stamp", 21 characters) is from the xdata table in pysiaalarm
//     (src/pysiaalarm/data/xdata.json); its text uses the timestamp's format.
//   - [X<longitude>] and [Y<latitude>]: signed decimal degrees with 6 decimals
//     (for example [X-1.234567][Y53.123456]). The exact DC-09 character format
//     of X and Y could not be confirmed from a public copy of the standard;
//     pysiaalarm's table gives them 12 ASCII characters, which a signed 6-decimal
//     value always fits, and the dc09_spt sender writes plain decimal strings.
//   - [I<text>]: alarm text from Message.Text, printable ASCII only, without
//     '[', ']' or '|', at most 64 characters, prefixed "UNVERIFIED" when the
//     device could not be verified so the ARC operator sees it.
//
// # Duplicates
//
// DC-09 sequence numbers belong to the link, not to the alarm, so a message
// retried by the outbox is sent with a new SEQ. The ARC can still recognise a
// duplicate: account, event code, zone and the [H] time of occurrence are the
// same on every resend of the same forward.Message.
package dc09
