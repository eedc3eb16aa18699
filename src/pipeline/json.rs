//! JSON lines of the stable schema, in pieces: an observation's fields and a decision, so that
//! shards can render in parallel and the merger only joins bytes (`{obs...,"decision":{...}}`).

use crate::flow::Observation;
use crate::policy::Decision;

/// The observation as a JSON object without its closing brace (`{"ts":...,"frame":12`).
pub fn observation_open(o: &Observation, out: &mut Vec<u8>) {
    let at = out.len();
    if serde_json::to_writer(&mut *out, o).is_ok() && out.last() == Some(&b'}') {
        out.pop();
    } else {
        out.truncate(at);
        out.push(b'{');
    }
}

/// The decision as a JSON object.
pub fn decision(d: &Decision, out: &mut Vec<u8>) {
    let at = out.len();
    if serde_json::to_writer(&mut *out, d).is_err() {
        out.truncate(at);
        out.extend_from_slice(b"{}");
    }
}

/// One whole line: the observation's fields, then `"decision"` if any, closed, newline.
pub fn line(o: &Observation, d: Option<&Decision>, out: &mut Vec<u8>) {
    observation_open(o, out);
    close(d.map(|d| DecisionJson::Render(d)), out);
}

/// A decision to append to an open observation: rendered now, or already rendered.
pub enum DecisionJson<'a> {
    Render(&'a Decision),
    Bytes(&'a [u8]),
}

/// Close an open observation: `,"decision":...` if any, `}` and a newline.
pub fn close(d: Option<DecisionJson<'_>>, out: &mut Vec<u8>) {
    if let Some(d) = d {
        out.extend_from_slice(b",\"decision\":");
        match d {
            DecisionJson::Render(d) => decision(d, out),
            DecisionJson::Bytes(b) => out.extend_from_slice(b),
        }
    }
    out.extend_from_slice(b"}\n");
}
