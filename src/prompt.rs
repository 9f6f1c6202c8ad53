//! The chat layout the text stream reads and writes, shared by training and answering.
//!
//! A text row is `question prompt ++ <computed>v</computed> ++ answer <|im_end|>`:
//! the WAT stream reads the prompt; the computed span is given, never predicted.

use crate::config::ArgumentView;
use crate::tokenize::{TextTokenizer, TokenizeError};

/// The prompt the text stream reads before answering.
pub fn prompt(question: &str) -> String {
    format!("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
}

/// A question's prompt as token ids, with where its words and its bound arguments sit.
pub struct PromptTokens {
    pub ids: Vec<u32>,
    /// The question's own words (without the chat markers).
    pub wording: std::ops::Range<usize>,
    /// The tokens that spell the question's bound arguments (numbers, and strings
    /// inside their quotes): what the WAT stream leaves unread when
    /// `wat.read_arguments` is off — the arguments reach the program through
    /// binding, so its choice can rest on the wording alone.
    pub arguments: Vec<usize>,
    /// The tokens of the carrier the question was put in, when `frame` was given
    /// (see `curriculum::Example::frame`).
    pub carrier: Vec<usize>,
}

/// The token that stands for each bound argument under `model.arguments = "placeholder"`.
pub const ARGUMENT_TOKEN: &str = "<|arg|>";

/// `question` as the text stream reads it, with the character span of each bound
/// argument in it: as written, or with every argument replaced by [`ARGUMENT_TOKEN`].
pub fn shown_question(question: &str, view: ArgumentView) -> (String, Vec<std::ops::Range<usize>>) {
    let spans = crate::sandbox::bind_spans(question).into_iter().map(|(_, span)| span);
    match view {
        ArgumentView::Tokens => (question.to_string(), spans.collect()),
        ArgumentView::Placeholder => {
            let chars: Vec<char> = question.chars().collect();
            let (mut shown, mut at, mut placed) = (String::new(), 0, Vec::new());
            for span in spans {
                shown.extend(&chars[at..span.start]);
                let start = shown.chars().count();
                shown.push_str(ARGUMENT_TOKEN);
                placed.push(start..start + ARGUMENT_TOKEN.chars().count());
                at = span.end;
            }
            shown.extend(&chars[at..]);
            (shown, placed)
        }
    }
}

/// Tokenizes `question`'s prompt as the text stream reads it (`view`) and locates its
/// words, arguments and (given its `frame`) carrier, all from the tokens' character
/// offsets.
pub fn prompt_tokens(
    text: &TextTokenizer,
    question: &str,
    view: ArgumentView,
    frame: Option<[usize; 2]>,
) -> Result<PromptTokens, TokenizeError> {
    if view == ArgumentView::Placeholder && text.token_id(ARGUMENT_TOKEN).is_none() {
        return Err(TokenizeError::Codec(format!(
            "model.arguments = \"placeholder\" needs a {ARGUMENT_TOKEN} token, which this tokenizer lacks \
             (tokenizers trained here have it; use \"tokens\" with a checkpoint's)"
        )));
    }
    let (shown, spans) = shown_question(question, view);
    let (ids, offsets) = text.encode_with_offsets(&prompt(&shown))?;
    let at = "<|im_start|>user\n".chars().count();
    let overlapping = |span: std::ops::Range<usize>| {
        offsets
            .iter()
            .enumerate()
            .filter(move |&(_, &(a, b))| b > a && a < span.end && b > span.start)
            .map(|(i, _)| i)
    };
    let length = shown.chars().count();
    let question_span = at..at + length;
    let words: Vec<usize> = overlapping(question_span).collect();
    let wording = match (words.first(), words.last()) {
        (Some(&first), Some(&last)) => first..last + 1,
        _ => 0..ids.len(),
    };
    let mut arguments: Vec<usize> = spans
        .into_iter()
        .flat_map(|span| overlapping(span.start + at..span.end + at))
        .collect();
    arguments.dedup();
    // The carrier spells no argument, so its lengths are the same in the shown question.
    let carrier = match frame {
        Some([before, after]) if before + after <= length => overlapping(at..at + before)
            .chain(overlapping(at + length - after..at + length))
            .filter(|i| !arguments.contains(i))
            .collect(),
        _ => Vec::new(),
    };
    Ok(PromptTokens {
        ids,
        wording,
        arguments,
        carrier,
    })
}

/// The span injected after the prompt with the sandbox's value, as text.
pub fn computed_span(value: f64) -> String {
    format!("<computed>{}</computed>", crate::sandbox::format_value(value))
}

/// Tokens of the value field of a computed span: values shorter than this are
/// filled with spaces, so the span always has the same length and each digit of
/// the answer sits at a fixed distance from the digit it restates — copying is
/// then one relative-position lookup rather than an induction over repeated digits.
pub const COMPUTED_FIELD: usize = 24;

/// The computed span as token ids: `<computed>`, the value, fill up to
/// [`COMPUTED_FIELD`] tokens, `</computed>`.
pub fn computed_ids(text: &TextTokenizer, value: f64) -> Result<Vec<u32>, TokenizeError> {
    let mut ids = text.encode("<computed>")?;
    let digits = text.encode(&crate::sandbox::format_value(value))?;
    let fill = match text.encode(" ")?.as_slice() {
        [one] => *one,
        _ => text.token_id("<|endoftext|>").unwrap_or(0),
    };
    let n = digits.len();
    ids.extend(digits);
    ids.extend(std::iter::repeat_n(fill, COMPUTED_FIELD.saturating_sub(n)));
    ids.extend(text.encode("</computed>")?);
    Ok(ids)
}


/// The text each copy action writes for `value` (in
/// [`CopyAction::ALL`](crate::model::world::CopyAction::ALL)'s order): the number
/// at `places` decimals, and yes/no where the value is 1 or 0 (`None` otherwise).
pub fn copy_texts(value: f64, places: u32) -> [Option<String>; 2] {
    let truth = if value == 1.0 {
        Some("Yes")
    } else if value == 0.0 {
        Some("No")
    } else {
        None
    };
    [Some(crate::sandbox::format_value_places(value, places)), truth.map(String::from)]
}

/// [`copy_texts`] as token ids: what the copy head writes into an answer.
pub fn copy_writes(text: &TextTokenizer, value: f64, places: u32) -> Result<[Option<Vec<u32>>; 2], TokenizeError> {
    let [number, truth] = copy_texts(value, places);
    let encode = |t: Option<String>| t.map(|t| text.encode(&t)).transpose();
    Ok([encode(number)?, encode(truth)?])
}

/// Where an answer text states `value`, for training the copy head: the text
/// before it, the copy action (0 = the number, 1 = yes/no) and the text after it,
/// with the value written as the action writes it. The number is the answer's last
/// that equals the value (at four decimals, as the curriculum writes answers); a
/// yes/no is the answer's first such word when the value is 1 or 0. `None` when the
/// answer does not state the value.
pub fn split_at_value(answer: &str, value: f64, places: u32) -> Option<(String, usize, String)> {
    let chars: Vec<char> = answer.chars().collect();
    let text = |r: std::ops::Range<usize>| chars[r].iter().collect::<String>();
    let [_, truth] = copy_texts(value, places);
    if let Some(truth) = truth {
        let mut at = 0;
        for word in answer.split_inclusive(|c: char| !c.is_alphanumeric()) {
            let bare = word.trim_end_matches(|c: char| !c.is_alphanumeric());
            let len = bare.chars().count();
            if bare.eq_ignore_ascii_case(&truth) {
                return Some((text(0..at), 1, text(at + len..chars.len())));
            }
            at += word.chars().count();
        }
    }
    let shown = crate::sandbox::format_value(value);
    let span = crate::sandbox::bind_spans(answer).into_iter().rev().find_map(|(arg, span)| match arg {
        crate::sandbox::Arg::Number(n) if crate::sandbox::format_value(n) == shown => Some(span),
        _ => None,
    })?;
    Some((text(0..span.start), 0, text(span.end..chars.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_split_at_the_value_they_state() {
        let split = |answer: &str, value: f64| split_at_value(answer, value, 4);
        let parts = |before: &str, action: usize, after: &str| Some((before.to_string(), action, after.to_string()));
        assert_eq!(split("The answer is 1044.", 1044.0), parts("The answer is ", 0, "."));
        assert_eq!(split("It is -7.5 metres.", -7.5), parts("It is ", 0, " metres."));
        assert_eq!(split("The answer is 0.6667.", 2.0 / 3.0), parts("The answer is ", 0, "."));
        // The last number that is the value, not an operand before it.
        assert_eq!(split("12 + 30 is 42.", 42.0), parts("12 + 30 is ", 0, "."));
        assert_eq!(split("Yes.", 1.0), parts("", 1, "."));
        assert_eq!(split("No, it is not.", 0.0), parts("", 1, ", it is not."));
        assert_eq!(split("The answer is 0.", 0.0), parts("The answer is ", 0, "."));
        assert_eq!(split("Twelve.", 12.0), None);
        assert_eq!(split("Yes.", 0.0), None);
        assert_eq!(copy_texts(2.0 / 3.0, 2), [Some("0.67".into()), None]);
        assert_eq!(copy_texts(1.0, 4), [Some("1".into()), Some("Yes".into())]);
        assert_eq!(copy_texts(-0.0, 4), [Some("0".into()), Some("No".into())]);
    }
}
