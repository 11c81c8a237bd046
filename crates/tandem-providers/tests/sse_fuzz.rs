//! Fuzzing the SSE decoder (proptest drivers): arbitrary bytes never panic, and how a stream
//! is cut into reads never changes the events decoded from it. Failing inputs are kept in
//! `proptest-regressions/`.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use tandem_providers::sse::SseDecoder;

fn decode(chunks: &[&[u8]]) -> Result<Vec<(Option<String>, String)>, String> {
    let mut d = SseDecoder::new();
    let mut out = Vec::new();
    for c in chunks {
        out.extend(d.push(c).map_err(|e| e.to_string())?);
    }
    out.extend(d.finish().map_err(|e| e.to_string())?);
    Ok(out.into_iter().map(|e| (e.event, e.data)).collect())
}

fn sse_like() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        "data: \\PC{0,20}".prop_map(String::from),
        "event: [a-z_]{1,12}".prop_map(String::from),
        Just(": keep-alive".to_string()),
        Just("data:[DONE]".to_string()),
        Just(String::new()),
        "\\PC{0,16}".prop_map(String::from),
    ];
    let eol = prop::sample::select(vec!["\n", "\r\n", "\r"]);
    prop::collection::vec((line, eol), 0..24).prop_map(|ls| {
        ls.into_iter()
            .flat_map(|(l, e)| format!("{l}{e}").into_bytes())
            .collect()
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = decode(&[&bytes]);
    }

    #[test]
    fn cutting_the_stream_does_not_change_the_events(
        bytes in sse_like(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let whole = decode(&[&bytes]);
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        at.sort_unstable();
        let mut pieces: Vec<&[u8]> = Vec::new();
        let mut prev = 0;
        for a in at.into_iter().chain([bytes.len()]) {
            pieces.push(&bytes[prev..a]);
            prev = a;
        }
        prop_assert_eq!(decode(&pieces), whole);
    }
}
