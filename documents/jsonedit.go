package documents

import "encoding/json"

// jsonOf encodes a string or number for jsonobj.Object.Set.
func jsonOf(v any) json.RawMessage {
	b, _ := json.Marshal(v) // strings and numbers only
	return b
}
