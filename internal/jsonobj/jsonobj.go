// Package jsonobj edits one JSON object in place: members keep their order and every value
// not touched keeps its bytes, so a stored resource changes only where it is edited.
package jsonobj

import (
	"bytes"
	"encoding/json"
	"errors"
)

// Object is one JSON object as its members in order, for editing a resource without
// reordering or re-encoding what it does not touch.
type Object []Member

// Member is one key and its value as written.
type Member struct {
	Key   string
	Value json.RawMessage
}

// ErrNotObject is Parse's error for input that is not one JSON object.
var ErrNotObject = errors.New("jsonobj: not a JSON object")

// Parse splits raw (one JSON object) into its members.
func Parse(raw []byte) (Object, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, ErrNotObject
	}
	var o Object
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, ErrNotObject
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		o = append(o, Member{Key: key, Value: v})
	}
	return o, nil
}

// Get returns key's value, nil when absent.
func (o Object) Get(key string) json.RawMessage {
	for _, m := range o {
		if m.Key == key {
			return m.Value
		}
	}
	return nil
}

// Set replaces key's value, or appends the member.
func (o Object) Set(key string, v json.RawMessage) Object {
	for i := range o {
		if o[i].Key == key {
			o[i].Value = v
			return o
		}
	}
	return append(o, Member{Key: key, Value: v})
}

// Del removes key.
func (o Object) Del(key string) Object {
	for i := range o {
		if o[i].Key == key {
			return append(o[:i:i], o[i+1:]...)
		}
	}
	return o
}

// Encode writes the object back, members in order, values as they are.
func (o Object) Encode() []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.Key)
		b.Write(k)
		b.WriteByte(':')
		b.Write(m.Value)
	}
	b.WriteByte('}')
	return b.Bytes()
}
