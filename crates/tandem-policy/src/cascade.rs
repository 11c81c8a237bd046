//! Cascade confidence: should the SLM's answer be returned, or the request escalated?
//!
//! The score comes from the SLM's own token log-probabilities: the mean log-probability of
//! the sampled tokens (the geometric-mean probability is `exp(mean)`, reported as the
//! confidence), the lowest single-token log-probability, and the mean entropy of the top-k
//! distribution at each position (an approximation of the full entropy from the alternatives
//! the engine returns). A refusal ("I don't know", 「不知道」) also escalates when enabled.
//!
//! A tool call or a structured answer is also checked for shape ([`structure_faults`]): a
//! call to a function the request did not offer, arguments or an answer that are not JSON or
//! fail their schema (possible from a remote model or an unconstrained one), no call when
//! one was required. Any such fault escalates.

use serde::Serialize;
use serde_json::Value;
use tandem_types::openai::{ChatRequest, ResponseMessage};
use tandem_types::tools::{ResponseFormat, ToolChoice};

fn schema_fault(schema: &Value, v: &Value) -> Option<String> {
    match jsonschema::validator_for(schema) {
        Ok(validator) => validator
            .iter_errors(v)
            .next()
            .map(|e| format!("{e} at '{}'", e.instance_path())),
        // A schema the validator cannot compile is not the answer's fault.
        Err(_) => None,
    }
}

/// What is wrong with the shape of an answer to `req`: each fault in words (empty: none).
pub fn structure_faults(req: &ChatRequest, answer: &ResponseMessage) -> Vec<String> {
    let mut out = Vec::new();
    if req.wants_tools() {
        for call in &answer.tool_calls {
            let name = &call.function.name;
            let Some(tool) = req.tools.iter().find(|t| &t.function.name == name) else {
                out.push(format!(
                    "called function '{name}', which the request does not offer"
                ));
                continue;
            };
            match serde_json::from_str::<Value>(&call.function.arguments) {
                Ok(args) => {
                    if let Some(f) = schema_fault(&tool.function.parameters, &args) {
                        out.push(format!("arguments of '{name}' fail its schema: {f}"));
                    }
                }
                Err(e) => out.push(format!("arguments of '{name}' are not JSON: {e}")),
            }
        }
        let required = matches!(
            req.tool_choice,
            ToolChoice::Required | ToolChoice::Function(_)
        );
        if required && answer.tool_calls.is_empty() {
            out.push("no tool call although one was required".to_string());
        }
        if let ToolChoice::Function(f) = &req.tool_choice
            && answer.tool_calls.iter().any(|c| &c.function.name != f)
        {
            out.push(format!("called another function than the required '{f}'"));
        }
    }
    if req.response_format.is_structured() && answer.tool_calls.is_empty() {
        match serde_json::from_str::<Value>(&answer.content) {
            Ok(v) => match &req.response_format {
                ResponseFormat::JsonSchema { schema, .. } => {
                    if let Some(f) = schema_fault(schema, &v) {
                        out.push(format!("the answer fails the response schema: {f}"));
                    }
                }
                _ if !v.is_object() => out.push("the answer is JSON but not an object".into()),
                _ => {}
            },
            Err(e) => out.push(format!("the answer is not JSON: {e}")),
        }
    }
    out
}

/// One generated token's log-probability and its top alternatives' log-probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenScore {
    /// Log-probability of the sampled token.
    pub logprob: f32,
    /// Log-probabilities of the most likely alternatives (may include the sampled token).
    pub top: Vec<f32>,
}

/// Summary of an answer's token log-probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Confidence {
    /// Tokens scored.
    pub tokens: usize,
    /// Mean log-probability.
    pub mean_logprob: f32,
    /// Lowest log-probability.
    pub min_logprob: f32,
    /// Mean entropy (nats) of the renormalised top-k distribution.
    pub mean_entropy: f32,
    /// `exp(mean_logprob)`: the geometric-mean token probability, in [0, 1].
    pub score: f32,
}

/// Score the tokens of an answer. No tokens gives zero confidence.
pub fn confidence(tokens: &[TokenScore]) -> Confidence {
    if tokens.is_empty() {
        return Confidence {
            tokens: 0,
            mean_logprob: f32::NEG_INFINITY,
            min_logprob: f32::NEG_INFINITY,
            mean_entropy: 0.0,
            score: 0.0,
        };
    }
    let n = tokens.len() as f32;
    let mut sum = 0.0f32;
    let mut min = f32::INFINITY;
    let mut ent = 0.0f32;
    for t in tokens {
        let lp = if t.logprob.is_finite() {
            t.logprob
        } else {
            -100.0
        };
        sum += lp;
        min = min.min(lp);
        ent += top_entropy(&t.top);
    }
    let mean = sum / n;
    Confidence {
        tokens: tokens.len(),
        mean_logprob: mean,
        min_logprob: min,
        mean_entropy: ent / n,
        score: mean.exp().clamp(0.0, 1.0),
    }
}

fn top_entropy(top: &[f32]) -> f32 {
    let ps: Vec<f32> = top
        .iter()
        .filter(|l| l.is_finite())
        .map(|l| l.exp())
        .collect();
    let z: f32 = ps.iter().sum();
    if z <= 0.0 {
        return 0.0;
    }
    ps.iter()
        .map(|p| p / z)
        .filter(|p| *p > 0.0)
        .map(|p| -p * p.ln())
        .sum()
}

/// Per-route escalation thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    /// Escalate when the mean log-probability is below this.
    pub min_mean_logprob: f32,
    /// Escalate when any token is below this.
    pub min_token_logprob: Option<f32>,
    /// Escalate when the mean entropy is above this.
    pub max_mean_entropy: Option<f32>,
    /// Escalate on "I don't know"-style answers.
    pub escalate_on_refusal: bool,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_mean_logprob: -0.8,
            min_token_logprob: None,
            max_mean_entropy: None,
            escalate_on_refusal: true,
        }
    }
}

/// The cascade's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Hand the request to the LLM.
    pub escalate: bool,
    /// Why, in words (one entry per test that failed, or one saying all passed).
    pub reasons: Vec<String>,
    /// The scores used.
    pub confidence: Confidence,
}

/// Phrases with which a model admits it cannot answer (lower-cased).
const REFUSALS: &[&str] = &[
    "i don't know",
    "i do not know",
    "i'm not sure",
    "i am not sure",
    "i cannot answer",
    "i can't answer",
    "i'm unable to",
    "i am unable to",
    "not enough information",
    "no information",
    "不知道",
    "無法回答",
    "无法回答",
    "不確定",
    "不确定",
    "沒有相關資訊",
    "没有相关信息",
    "資料中沒有",
];

/// Whether `text` reads as a refusal (looked for in its first 200 characters).
pub fn is_refusal(text: &str) -> bool {
    let head: String = text.chars().take(200).collect::<String>().to_lowercase();
    let head = head.replace('’', "'");
    REFUSALS.iter().any(|r| head.contains(r))
}

/// Decide whether to escalate an SLM answer.
pub fn judge(text: &str, tokens: &[TokenScore], t: &Thresholds) -> Verdict {
    let c = confidence(tokens);
    let mut reasons = Vec::new();
    if c.tokens == 0 {
        reasons.push("the SLM produced no scored tokens".to_string());
    } else {
        if c.mean_logprob < t.min_mean_logprob {
            reasons.push(format!(
                "mean logprob {:.3} < {:.3}",
                c.mean_logprob, t.min_mean_logprob
            ));
        }
        if let Some(m) = t.min_token_logprob
            && c.min_logprob < m
        {
            reasons.push(format!("min token logprob {:.3} < {:.3}", c.min_logprob, m));
        }
        if let Some(m) = t.max_mean_entropy
            && c.mean_entropy > m
        {
            reasons.push(format!("mean entropy {:.3} > {:.3}", c.mean_entropy, m));
        }
    }
    if t.escalate_on_refusal && is_refusal(text) {
        reasons.push("the SLM said it does not know".to_string());
    }
    let escalate = !reasons.is_empty();
    if !escalate {
        reasons.push(format!(
            "confident: mean logprob {:.3} ≥ {:.3}",
            c.mean_logprob, t.min_mean_logprob
        ));
    }
    Verdict {
        escalate,
        reasons,
        confidence: c,
    }
}

#[cfg(test)]
mod structure_tests {
    use super::structure_faults;
    use serde_json::json;
    use tandem_types::openai::{ChatMessage, ChatRequest, ResponseMessage};
    use tandem_types::tools::{FunctionDef, ResponseFormat, Tool, ToolCall, ToolChoice};

    fn req() -> ChatRequest {
        let mut r = ChatRequest::new("m", vec![ChatMessage::new("user", "hi")]);
        r.tools = vec![Tool {
            kind: "function".into(),
            function: FunctionDef {
                name: "get_weather".into(),
                description: None,
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}},
                    "required": ["city"]}),
                strict: None,
            },
        }];
        r.tool_choice = ToolChoice::Auto;
        r
    }

    fn called(name: &str, args: &str) -> ResponseMessage {
        let mut m = ResponseMessage::text("");
        m.tool_calls = vec![ToolCall::function("call_1", name, args.to_string())];
        m
    }

    #[test]
    fn good_calls_and_answers_have_no_fault() {
        assert!(structure_faults(&req(), &called("get_weather", r#"{"city": "台北"}"#)).is_empty());
        assert!(structure_faults(&req(), &ResponseMessage::text("It is sunny.")).is_empty());
    }

    #[test]
    fn each_fault_is_named() {
        let r = req();
        let f = structure_faults(&r, &called("get_time", "{}"));
        assert!(
            f[0].contains("'get_time'") && f[0].contains("does not offer"),
            "{f:?}"
        );
        let f = structure_faults(&r, &called("get_weather", "{city"));
        assert!(f[0].contains("not JSON"), "{f:?}");
        let f = structure_faults(&r, &called("get_weather", r#"{"city": 3}"#));
        assert!(f[0].contains("fail its schema"), "{f:?}");
        let mut forced = req();
        forced.tool_choice = ToolChoice::Required;
        let f = structure_faults(&forced, &ResponseMessage::text("no"));
        assert_eq!(f, ["no tool call although one was required"]);
        let mut json = ChatRequest::new("m", vec![ChatMessage::new("user", "hi")]);
        json.response_format = ResponseFormat::JsonSchema {
            name: "o".into(),
            schema: json!({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}),
            strict: true,
        };
        assert!(structure_faults(&json, &ResponseMessage::text(r#"{"n": 2}"#)).is_empty());
        let f = structure_faults(&json, &ResponseMessage::text(r#"{"n": "two"}"#));
        assert!(f[0].contains("fails the response schema"), "{f:?}");
        let f = structure_faults(&json, &ResponseMessage::text("two"));
        assert!(f[0].contains("not JSON"), "{f:?}");
        json.response_format = ResponseFormat::JsonObject;
        let f = structure_faults(&json, &ResponseMessage::text("[1]"));
        assert!(f[0].contains("not an object"), "{f:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(lps: &[f32]) -> Vec<TokenScore> {
        lps.iter()
            .map(|&l| TokenScore {
                logprob: l,
                top: vec![l],
            })
            .collect()
    }

    #[test]
    fn confidence_by_hand() {
        let c = confidence(&ts(&[-0.1, -0.3, -2.0]));
        assert_eq!(c.tokens, 3);
        assert!((c.mean_logprob - (-0.8)).abs() < 1e-6);
        assert!((c.min_logprob - (-2.0)).abs() < 1e-6);
        assert!((c.score - (-0.8f32).exp()).abs() < 1e-6);
        // One alternative only: the renormalised distribution is certain.
        assert!(c.mean_entropy.abs() < 1e-6);
        // Two equally likely alternatives: entropy ln 2.
        let c = confidence(&[TokenScore {
            logprob: 0.5f32.ln(),
            top: vec![0.5f32.ln(), 0.5f32.ln()],
        }]);
        assert!((c.mean_entropy - std::f32::consts::LN_2).abs() < 1e-5);
        assert_eq!(confidence(&[]).score, 0.0);
    }

    #[test]
    fn thresholds_decide() {
        let t = Thresholds::default();
        assert!(!judge("Paris.", &ts(&[-0.05, -0.1]), &t).escalate);
        let v = judge("Maybe Lyon", &ts(&[-2.0, -1.5]), &t);
        assert!(v.escalate);
        assert!(v.reasons[0].contains("mean logprob"), "{:?}", v.reasons);
        let strict = Thresholds {
            min_token_logprob: Some(-1.0),
            ..t
        };
        assert!(judge("ok", &ts(&[-0.01, -0.01, -1.2]), &strict).escalate);
        assert!(!judge("ok", &ts(&[-0.01, -0.01, -1.2]), &t).escalate);
        let ent = Thresholds {
            max_mean_entropy: Some(0.5),
            ..t
        };
        let flat = vec![TokenScore {
            logprob: -0.1,
            top: vec![-1.1, -1.1, -1.1],
        }];
        assert!(judge("x", &flat, &ent).escalate);
        assert!(judge("", &[], &t).escalate);
    }

    #[test]
    fn refusals_in_both_languages() {
        let t = Thresholds::default();
        assert!(judge("I don't know the answer.", &ts(&[-0.01]), &t).escalate);
        assert!(judge("I don’t know.", &ts(&[-0.01]), &t).escalate);
        assert!(judge("抱歉，我不知道。", &ts(&[-0.01]), &t).escalate);
        assert!(is_refusal("資料中沒有提到這一點"));
        assert!(!is_refusal("The answer is 42."));
        let off = Thresholds {
            escalate_on_refusal: false,
            ..t
        };
        assert!(!judge("I don't know", &ts(&[-0.01]), &off).escalate);
    }
}
