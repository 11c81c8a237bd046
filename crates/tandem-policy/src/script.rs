//! The script answers are written in: `answer_script` per route, per tenant
//! (`policy.tenants.NAME.answer_script`) and as the policy's default. `auto` (the default)
//! answers a request written in Traditional Chinese in Traditional Chinese with Taiwan usage;
//! `zh-TW` does so for every answer with Chinese in it; `off` leaves answers as the model
//! wrote them. The decision says which applies and why; the gateway tells the model and
//! converts what still comes back in Simplified characters (`tandem-zh`).

use tandem_zh::{Counts, Script, ZH_TW};

/// An `answer_script` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScriptSetting {
    /// zh-TW when the request is written in Traditional Chinese.
    #[default]
    Auto,
    /// Always zh-TW.
    ZhTw,
    /// Never convert.
    Off,
}

impl ScriptSetting {
    /// Parses `auto`, `zh-TW` (any case, `zh_tw` too) or `off`.
    pub fn parse(s: &str) -> Option<ScriptSetting> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "auto" => Some(ScriptSetting::Auto),
            "zh-tw" | "zh-hant-tw" => Some(ScriptSetting::ZhTw),
            "off" | "none" => Some(ScriptSetting::Off),
            _ => None,
        }
    }

    /// The name in `tandem.yaml`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ScriptSetting::Auto => "auto",
            ScriptSetting::ZhTw => ZH_TW,
            ScriptSetting::Off => "off",
        }
    }
}

/// The script this request's answer is written in, decided with the route.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AnswerScript {
    /// The locale answers are converted to (`zh-TW`).
    pub locale: &'static str,
    /// Why, in words (for reasons, explain and the ledger).
    pub why: String,
    /// The request itself is written in Traditional Chinese.
    pub chinese_request: bool,
}

impl AnswerScript {
    /// What the model is told (a system instruction): in Chinese for a Chinese request; for
    /// any other, only how to write Chinese if it answers in Chinese.
    pub fn instruction(&self) -> &'static str {
        if self.chinese_request {
            "請一律使用台灣繁體中文（正體字）與台灣慣用的詞彙回答，不要使用簡體字。"
        } else {
            "If you answer in Chinese, write Traditional Chinese as used in Taiwan (zh-TW), \
             never Simplified characters."
        }
    }
}

/// Where the setting that applies came from (for the reason).
pub(crate) enum Source<'a> {
    Route(&'a str),
    Tenant(&'a str),
    Policy,
}

/// The answer script for a request whose last user message is `text`, under `setting`.
pub(crate) fn resolve(
    setting: ScriptSetting,
    source: Source<'_>,
    text: &str,
) -> Option<AnswerScript> {
    let counts = Counts::of(text);
    let chinese_request = counts.script() == Script::Traditional;
    let why = match setting {
        ScriptSetting::Off => return None,
        ScriptSetting::Auto if !chinese_request => return None,
        ScriptSetting::Auto => format!(
            "the request is written in Traditional Chinese ({} Traditional-only, {} Simplified-only characters)",
            counts.traditional, counts.simplified
        ),
        ScriptSetting::ZhTw => {
            let source = match source {
                Source::Route(r) => format!("route `{r}`"),
                Source::Tenant(t) => format!("tenant `{t}`"),
                Source::Policy => "the policy".to_string(),
            };
            format!("{source} sets answer_script: {ZH_TW}")
        }
    };
    Some(AnswerScript {
        locale: ZH_TW,
        why,
        chinese_request,
    })
}
