package hl7v2

import (
	"errors"
	"fmt"

	"github.com/concord-hie/concord/internal/errs"
)

// ErrCode is an HL7 table 0357 message error condition code. It is carried in ERR-3 (2.5+)
// or ERR-1.4 (2.3/2.4) of an ACK.
type ErrCode int

// The table 0357 codes Concord emits.
const (
	NoError                ErrCode = 0
	SegmentSequenceError   ErrCode = 100
	RequiredFieldMissing   ErrCode = 101
	DataTypeError          ErrCode = 102
	TableValueNotFound     ErrCode = 103
	UnsupportedMessageType ErrCode = 200
	UnsupportedEventCode   ErrCode = 201
	UnsupportedProcessing  ErrCode = 202
	UnsupportedVersion     ErrCode = 203
	UnknownKeyIdentifier   ErrCode = 204
	DuplicateKeyIdentifier ErrCode = 205
	ApplicationInternal    ErrCode = 207
)

// Text returns the table 0357 display text of c; it contains no message data.
func (c ErrCode) Text() string {
	switch c {
	case NoError:
		return "Message accepted"
	case SegmentSequenceError:
		return "Segment sequence error"
	case RequiredFieldMissing:
		return "Required field missing"
	case DataTypeError:
		return "Data type error"
	case TableValueNotFound:
		return "Table value not found"
	case UnsupportedMessageType:
		return "Unsupported message type"
	case UnsupportedEventCode:
		return "Unsupported event code"
	case UnsupportedProcessing:
		return "Unsupported processing id"
	case UnsupportedVersion:
		return "Unsupported version id"
	case UnknownKeyIdentifier:
		return "Unknown key identifier"
	case DuplicateKeyIdentifier:
		return "Duplicate key identifier"
	case ApplicationInternal:
		return "Application internal error"
	}
	return "Error"
}

// Problem is the cause carried by every error this package returns for bad input: a table
// 0357 code and the location of the offending element ("PID-7", "OBX[3]-2", "MSH-10"). Loc
// and Text never contain message values, so both are safe to send back in an ACK.
type Problem struct {
	Code ErrCode
	Loc  string
	Text string
}

func (p *Problem) Error() string {
	s := fmt.Sprintf("hl7v2 %d", int(p.Code))
	if p.Loc != "" {
		s += " at " + p.Loc
	}
	if p.Text != "" {
		s += ": " + p.Text
	}
	return s
}

// ProblemOf returns the Problem in err's chain, or nil when there is none.
func ProblemOf(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	return nil
}

// problem builds the *errs.Error this package returns: Invalid for content errors (1xx),
// Unsupported for unsupported type/event/version (2xx), Internal for 207. Path is the
// HL7 location, never a value.
func problem(op string, code ErrCode, loc, text string) *errs.Error {
	c := errs.Invalid
	switch {
	case code == ApplicationInternal:
		c = errs.Internal
	case code >= 200:
		c = errs.Unsupported
	}
	msg := code.Text()
	if text != "" {
		msg = text
	}
	e := errs.E(op, c, msg, &Problem{Code: code, Loc: loc, Text: text})
	e.Path = loc
	return e
}
