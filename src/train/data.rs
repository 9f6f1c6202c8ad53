//! From verified examples to model input: a text row in the chat layout of
//! [`crate::prompt`], the WAT program's tokens, and padded batches with their loss
//! masks. The text loss covers the answer and its end marker, never the computed span.

use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};

use crate::config::ArgumentView;
use crate::curriculum::Example;
use crate::curriculum::rng::Rng;
use crate::model::world::{Batch, CopyAction};
use crate::prompt::{PromptTokens, computed_ids, copy_writes, prompt_tokens, split_at_value};
use crate::tokenize::wat::{BOS, EOS, PAD, WatVocab};
use crate::tokenize::{TextTokenizer, TokenizeError};

/// One example as token ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// Prompt, computed span, answer, end marker.
    pub text: Vec<u32>,
    /// Tokens of the prompt (what the WAT stream may read).
    pub question_len: usize,
    /// The question's own words within the prompt (without the chat markers).
    pub wording: std::ops::Range<usize>,
    /// Prompt positions the WAT stream does not read (the arguments' tokens, when
    /// masked; see [`PromptTokens`]).
    pub unread: Vec<usize>,
    /// Prompt positions of the carrier the question was put in (empty when none).
    pub carrier: Vec<usize>,
    /// Index of the first answer token (after the computed span).
    pub answer_start: usize,
    /// The program's WAT tokens (no `<bos>`/`<eos>`).
    pub wat: Vec<u32>,
    /// Where the answer states the computed value through the copy head (see
    /// [`Encoder::copy_places`]).
    pub copy: Option<CopyAt>,
}

/// The computed value copied into a text row's answer: the position before it
/// chooses the copy action, and its own tokens are given, not predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyAt {
    /// Index in [`Encoded::text`] of the value's first token.
    pub at: usize,
    pub len: usize,
    pub action: CopyAction,
}

/// Encodes examples for both streams.
pub struct Encoder<'a> {
    pub text: &'a TextTokenizer,
    pub wat: &'a WatVocab,
    /// Id used to pad text rows.
    pub pad: u32,
    /// Whether the WAT stream reads the arguments' tokens (`wat.read_arguments`).
    pub read_arguments: bool,
    /// How the text stream reads the arguments (`model.arguments`).
    pub arguments: ArgumentView,
    /// Longest text sequence: `train.max_seq_len` (at most the model's positions).
    pub max_text_tokens: usize,
    /// Longest program, in WAT tokens (`wat.max_tokens`).
    pub max_wat_tokens: usize,
    /// With a copy head (`model.answer = "copy"`), the decimals it writes values
    /// at: an answer that states its value gets it as the copy head writes it, the
    /// copy action as its target. `None`: the answer's tokens, as written.
    pub copy_places: Option<u32>,
}

impl Encoder<'_> {
    pub fn encode(&self, example: &Example) -> Result<Encoded, TokenizeError> {
        let PromptTokens {
            ids: prompt,
            wording,
            arguments,
            carrier,
        } = prompt_tokens(self.text, &example.question, self.arguments, example.frame)?;
        let unread = if self.read_arguments { Vec::new() } else { arguments };
        let computed = computed_ids(self.text, example.value)?;
        let question_len = prompt.len();
        let answer_start = question_len + computed.len();
        let mut text = prompt;
        text.extend(computed);
        let split = self
            .copy_places
            .and_then(|places| Some((places, split_at_value(&example.answer, example.value, places)?)));
        let copy = match split {
            Some((places, (before, action, after))) => {
                let action = CopyAction::ALL[action];
                let written = copy_writes(self.text, example.value, places)?[action.index()]
                    .clone()
                    .unwrap_or_default();
                text.extend(self.text.encode(&before)?);
                let at = text.len();
                text.extend(&written);
                text.extend(self.text.encode(&format!("{after}<|im_end|>"))?);
                Some(CopyAt { at, len: written.len(), action })
            }
            None => {
                text.extend(self.text.encode(&format!("{}<|im_end|>", example.answer))?);
                None
            }
        };
        let wat = self.wat.encode(&example.program)?;
        if text.len() > self.max_text_tokens {
            return Err(TokenizeError::TooLong {
                what: "question, computed value and answer",
                tokens: text.len(),
                limit: self.max_text_tokens,
                key: "train.max_seq_len",
            });
        }
        if wat.len() > self.max_wat_tokens {
            return Err(TokenizeError::TooLong { what: "program", tokens: wat.len(), limit: self.max_wat_tokens, key: "wat.max_tokens" });
        }
        Ok(Encoded {
            text,
            question_len,
            wording,
            unread,
            carrier,
            answer_start,
            wat,
            copy,
        })
    }
}

/// Replaces a `share` of `row`'s question word tokens by `mask`, drawn
/// from `rng`: word dropout, so no single word (a sentence frame's, say) carries
/// the whole decision.
pub fn drop_words(row: &mut Encoded, share: f64, mask: u32, rng: &mut Rng) {
    for i in row.wording.clone() {
        if rng.unit() <= share {
            row.text[i] = mask;
        }
    }
}

/// Replaces every token of `row`'s carrier by `mask`: carrier dropout, so the
/// program is learnt from the core that names the computation, the same under any
/// sentence frame — a frame never seen with that core included.
pub fn drop_carrier(row: &mut Encoded, mask: u32) {
    for &i in &row.carrier {
        row.text[i] = mask;
    }
}

/// A copy-practice variant of `example`: the computed value swapped for a random
/// one of the same shape (digits, decimals, sign) and the answer restating it, so the
/// answer can only come from the computed span. Yes/no answers flip. `None` when the
/// answer does not restate the value.
pub fn copy_variant(example: &Example, rng: &mut Rng) -> Option<Example> {
    let shown = crate::sandbox::format_value(example.value);
    let (value, answer) = match example.answer.as_str() {
        "Yes." if example.value == 1.0 => (0.0, "No.".to_string()),
        "No." if example.value == 0.0 => (1.0, "Yes.".to_string()),
        answer => {
            let at = answer.rfind(&shown)?;
            let value = random_like(&shown, rng)?;
            let replaced = format!(
                "{}{}{}",
                &answer[..at],
                crate::sandbox::format_value(value),
                &answer[at + shown.len()..]
            );
            (value, replaced)
        }
    };
    Some(Example {
        value,
        answer,
        ..example.clone()
    })
}

/// A random number written like `shown`: the same sign and decimals, and an integer
/// part of one digit fewer to one more.
fn random_like(shown: &str, rng: &mut Rng) -> Option<f64> {
    let negative = shown.starts_with('-');
    let body = shown.trim_start_matches('-');
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if !int.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 4 {
        return None;
    }
    for _ in 0..16 {
        let digits = (int.len() as i64 + rng.range(-1, 1)).clamp(1, 12) as usize;
        let mut text = String::new();
        if negative {
            text.push('-');
        }
        for d in 0..digits {
            let lo = if d == 0 && digits > 1 { 1 } else { 0 };
            text.push((b'0' + rng.range(lo, 9) as u8) as char);
        }
        if !frac.is_empty() {
            text.push('.');
            for d in 0..frac.len() {
                let lo = if d + 1 == frac.len() { 1 } else { 0 };
                text.push((b'0' + rng.range(lo, 9) as u8) as char);
            }
        }
        let value: f64 = text.parse().ok()?;
        if crate::sandbox::format_value(value) == text {
            return Some(value);
        }
    }
    None
}

/// Pads encoded examples into one batch; on the CPU, bounded to where its
/// questions end and its losses start (see [`Batch::answers_from`]).
pub fn collate<B: Backend>(rows: &[&Encoded], pad: u32, device: &B::Device) -> Batch<B> {
    let b = rows.len();
    let s = rows.iter().map(|r| r.text.len()).max().unwrap_or(1);
    let (answers_from, reads_before) = match crate::backend::runs_on_host::<B>() {
        true => (
            rows.iter().map(|r| r.question_len.min(r.answer_start.saturating_sub(1))).min().unwrap_or(0).min(s),
            rows.iter().map(|r| r.question_len).max().unwrap_or(s).min(s),
        ),
        false => (0, s),
    };
    let w = rows.iter().map(|r| r.wat.len() + 1).max().unwrap_or(1);
    let mut actions = vec![0i32; b * s];
    let (mut ids, mut targets, mut loss, mut question) = (
        vec![pad as i32; b * s],
        vec![pad as i32; b * s],
        vec![0f32; b * s],
        vec![false; b * s],
    );
    let mut reads = vec![false; b * s];
    let (mut wat_ids, mut wat_targets, mut wat_loss) = (
        vec![PAD as i32; b * w],
        vec![PAD as i32; b * w],
        vec![0f32; b * w],
    );
    for (r, row) in rows.iter().enumerate() {
        let base = r * s;
        for (i, &t) in row.text.iter().enumerate() {
            ids[base + i] = t as i32;
            if i + 1 < row.text.len() {
                targets[base + i] = row.text[i + 1] as i32;
                if i + 1 >= row.answer_start {
                    loss[base + i] = 1.0;
                }
            }
            question[base + i] = i < row.question_len;
            reads[base + i] = i < row.question_len;
        }
        for &i in &row.unread {
            if i < s {
                reads[base + i] = false;
            }
        }
        if let Some(copy) = row.copy {
            // The position before the value chooses the copy action; the value's
            // own tokens are given.
            actions[base + copy.at - 1] = 1 + copy.action.index() as i32;
            for i in copy.at..copy.at + copy.len - 1 {
                loss[base + i] = 0.0;
            }
        }
        let base = r * w;
        let input = std::iter::once(BOS).chain(row.wat.iter().copied());
        let target = row.wat.iter().copied().chain(std::iter::once(EOS));
        for (i, (x, y)) in input.zip(target).enumerate() {
            wat_ids[base + i] = x as i32;
            wat_targets[base + i] = y as i32;
            wat_loss[base + i] = 1.0;
        }
    }
    let int =
        |v: Vec<i32>, n: usize| Tensor::<B, 2, Int>::from_data(TensorData::new(v, [b, n]), device);
    let float =
        |v: Vec<f32>, n: usize| Tensor::<B, 2>::from_data(TensorData::new(v, [b, n]), device);
    Batch {
        text_ids: int(ids, s),
        text_targets: int(targets, s),
        text_loss_mask: float(loss, s),
        copy_actions: int(actions, s),
        question: Tensor::<B, 2, Bool>::from_data(TensorData::new(question, [b, s]), device),
        wat_reads: Tensor::<B, 2, Bool>::from_data(TensorData::new(reads, [b, s]), device),
        answers_from,
        reads_before,
        wat_ids: int(wat_ids, w),
        wat_targets: int(wat_targets, w),
        wat_loss_mask: float(wat_loss, w),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use crate::curriculum::Split;
    use crate::prompt::{ARGUMENT_TOKEN, prompt};

    #[test]
    fn copy_variants_restate_a_new_value_of_the_same_shape() {
        let example = |value: f64, answer: &str| Example {
            id: "t".into(),
            stage: "s".into(),
            family: "f".into(),
            op: "add".into(),
            split: Split::Train,
            question: "q".into(),
            program: String::new(),
            args: vec![],
            value,
            answer: answer.into(),
            system: false,
            frame: None,
        };
        let mut rng = Rng::new(5);
        for (value, answer) in [
            (1044.0, "The answer is 1044."),
            (160.78, "The answer is 160.78."),
            (-7.5, "It is -7.5 metres."),
            (3.0, "The answer is 3."),
        ] {
            let shown = crate::sandbox::format_value(value);
            let mut changed = 0;
            for _ in 0..50 {
                let v = copy_variant(&example(value, answer), &mut rng).unwrap();
                let new = crate::sandbox::format_value(v.value);
                assert_eq!(v.answer, answer.replace(&shown, &new), "{answer}");
                assert_eq!(new.contains('.'), shown.contains('.'));
                assert_eq!(new.starts_with('-'), shown.starts_with('-'));
                assert!((new.len() as i64 - shown.len() as i64).abs() <= 1, "{new} vs {shown}");
                changed += usize::from(v.value != value);
            }
            assert!(changed > 40, "{answer}: only {changed} of 50 changed");
        }
        let yes = copy_variant(&example(1.0, "Yes."), &mut rng).unwrap();
        assert_eq!((yes.value, yes.answer.as_str()), (0.0, "No."));
        assert!(copy_variant(&example(12.0, "Twelve."), &mut rng).is_none());
    }

    /// An encoder of the tests' tokenizer: arguments as tokens, read by neither stream.
    fn encoder<'a>(text: &'a TextTokenizer, wat: &'a WatVocab, copy_places: Option<u32>) -> Encoder<'a> {
        Encoder {
            text,
            wat,
            pad: text.token_id("<|endoftext|>").unwrap(),
            read_arguments: false,
            arguments: ArgumentView::Tokens,
            max_text_tokens: 512,
            max_wat_tokens: 512,
            copy_places,
        }
    }

    #[test]
    fn answers_stating_their_value_train_the_copy_head() {
        let corpus = ["What is 2 - 9?", "The answer is -7.", "Is 7 prime?", "Yes.", "<computed>5</computed>"];
        let text = TextTokenizer::train_bpe(corpus.iter().copied().cycle().take(30), 300).unwrap();
        let wat = WatVocab::new();
        let encoder = encoder(&text, &wat, Some(4));
        let example = |q: &str, v: f64, answer: &str| Example {
            id: "t".into(),
            stage: "s".into(),
            family: "f".into(),
            op: "sub".into(),
            split: Split::Train,
            question: q.into(),
            program: String::new(),
            args: vec![],
            value: v,
            answer: answer.into(),
            system: false,
            frame: None,
        };
        for (q, v, answer, action, written) in [
            ("What is 2 - 9?", -7.0, "The answer is -7.", CopyAction::Value, "-7"),
            ("What is 2 - 9?", -1234.5, "The answer is -1234.5.", CopyAction::Value, "-1234.5"),
            ("Is 7 prime?", 1.0, "Yes.", CopyAction::Truth, "Yes"),
        ] {
            let row = encoder.encode(&example(q, v, answer)).unwrap();
            let copy = row.copy.expect(answer);
            assert_eq!(copy.action, action);
            assert_eq!(text.decode(&row.text[copy.at..copy.at + copy.len]).unwrap(), written);
            assert_eq!(text.decode(&row.text[row.answer_start..]).unwrap(), format!("{answer}<|im_end|>"));
            let batch = collate::<Cpu>(&[&row], encoder.pad, &Default::default());
            let actions: Vec<i64> = batch.copy_actions.into_data().convert::<i64>().to_vec().unwrap();
            let loss: Vec<f32> = batch.text_loss_mask.into_data().to_vec().unwrap();
            for i in 0..row.text.len() {
                let expected = if i + 1 == copy.at { 1 + action.index() as i64 } else { 0 };
                assert_eq!(actions[i], expected, "{answer}: position {i}");
                // The value's own tokens are given; the token after it is predicted.
                let given = (copy.at..copy.at + copy.len - 1).contains(&i);
                assert_eq!(loss[i] == 0.0, given || i + 1 < row.answer_start || i + 1 == row.text.len(), "{answer}: position {i}");
            }
        }
        // Without a copy head, or an answer that does not state its value: the tokens as written.
        assert!(encoder.encode(&example("q", 12.0, "Twelve.")).unwrap().copy.is_none());
        let tokens = Encoder { copy_places: None, ..encoder };
        assert!(tokens.encode(&example("What is 2 - 9?", -7.0, "The answer is -7.")).unwrap().copy.is_none());
    }

    #[test]
    fn batches_mask_the_computed_span_and_pad_both_streams() {
        let corpus = [
            "What is 2 + 3?",
            "The answer is 5.",
            "<computed>5</computed>",
        ];
        let text = TextTokenizer::train_bpe(corpus.iter().copied().cycle().take(30), 300).unwrap();
        let wat = WatVocab::new();
        let encoder = encoder(&text, &wat, None);
        let example = |q: &str, v: f64| {
            Example {
            id: "t".into(),
            stage: "s".into(),
            family: "add".into(),
            op: "add".into(),
            split: Split::Train,
            question: q.into(),
            program: "(module (func (export \"compute\") (param $a f64) (param $b f64) (result f64) local.get $a local.get $b f64.add))".into(),
            args: vec![],
            value: v,
            answer: format!("The answer is {v}."),
            system: false,
            frame: Some([8, 1]),
        }
        };
        let short = encoder.encode(&example("What is 2 + 3?", 5.0)).unwrap();
        let long = encoder
            .encode(&example("What is 20 + 30 + 1?", 51.0))
            .unwrap();
        assert_eq!(
            text.decode(&short.text[..short.question_len]).unwrap(),
            prompt("What is 2 + 3?")
        );
        let span = text
            .decode(&short.text[short.question_len..short.answer_start])
            .unwrap();
        assert_eq!(
            span.split_whitespace().collect::<String>(),
            "<computed>5</computed>",
            "{span:?}"
        );
        // Fixed width: every digit of the answer is as far from the one it restates.
        let span_len = |e: &Encoded| e.answer_start - e.question_len;
        assert_eq!(span_len(&short), span_len(&long));
        // The WAT stream leaves the arguments' digits unread, nothing else.
        let unread: String = short.unread.iter().map(|&i| text.decode(&short.text[i..=i]).unwrap()).collect();
        assert_eq!(unread.split_whitespace().collect::<String>(), "23");
        let batch = collate::<Cpu>(&[&short], encoder.pad, &Default::default());
        let reads: Vec<bool> = batch.wat_reads.into_data().to_vec().unwrap();
        assert_eq!(reads.iter().filter(|&&r| r).count(), short.question_len - short.unread.len());
        // The carrier ("What is {core}?") is found from the example's frame, and
        // carrier dropout masks it, nothing else.
        let carrier: String = short.carrier.iter().map(|&i| text.decode(&short.text[i..=i]).unwrap()).collect();
        assert_eq!(carrier.split_whitespace().collect::<String>(), "Whatis?");
        let mut dropped = short.clone();
        drop_carrier(&mut dropped, encoder.pad);
        let changed: Vec<usize> = (0..short.text.len()).filter(|&i| dropped.text[i] != short.text[i]).collect();
        assert_eq!(changed, short.carrier);
        // The wording is the question alone; word dropout masks only there.
        assert_eq!(text.decode(&short.text[short.wording.clone()]).unwrap(), "What is 2 + 3?");
        let mut rng = Rng::new(3);
        let mask = encoder.pad;
        let masked: Vec<Encoded> = (0..200)
            .map(|_| {
                let mut row = long.clone();
                drop_words(&mut row, 0.25, mask, &mut rng);
                row
            })
            .collect();
        let mut dropped = 0;
        for m in &masked {
            for (i, (&a, &b)) in long.text.iter().zip(&m.text).enumerate() {
                if a != b {
                    assert!(long.wording.contains(&i) && b == mask);
                    dropped += 1;
                }
            }
        }
        let share = dropped as f64 / (200 * long.wording.len()) as f64;
        assert!((0.18..0.32).contains(&share), "{share}");
        let digit = |e: &Encoded, from: usize| {
            (from..e.text.len()).find(|&i| text.decode(&e.text[i..=i]).unwrap() == "5").unwrap()
        };
        let (in_span, in_answer) = (digit(&short, short.question_len), digit(&short, short.answer_start));
        let long_first = digit(&long, long.question_len);
        let long_answer = digit(&long, long.answer_start);
        assert_eq!(in_answer - in_span, long_answer - long_first);
        let batch = collate::<Cpu>(&[&short, &long], encoder.pad, &Default::default());
        let [b, s] = batch.text_ids.dims();
        assert_eq!((b, s), (2, long.text.len()));
        let loss: Vec<f32> = batch.text_loss_mask.into_data().to_vec().unwrap();
        // Targets from the first answer token to the end marker, in the short row.
        let predicted = loss[..s].iter().filter(|&&m| m == 1.0).count();
        assert_eq!(predicted, short.text.len() - short.answer_start);
        assert_eq!(
            loss[short.answer_start - 2],
            0.0,
            "the computed span is given"
        );
        let question: Vec<bool> = batch.question.into_data().to_vec().unwrap();
        assert_eq!(
            question[..s].iter().filter(|&&q| q).count(),
            short.question_len
        );
        let wat_ids: Vec<i32> = batch.wat_ids.into_data().to_vec().unwrap();
        assert_eq!(wat_ids[0], BOS as i32);
        let wat_loss: Vec<f32> = batch.wat_loss_mask.into_data().to_vec().unwrap();
        assert_eq!(
            wat_loss.iter().sum::<f32>() as usize,
            short.wat.len() + 1 + long.wat.len() + 1
        );
    }

    #[test]
    fn placeholders_hide_every_argument_value_from_the_text_stream() {
        let corpus = ["What is 2 + 3?", "How many words are in \"a b\"?", "The answer is 5."];
        let text = TextTokenizer::train_bpe(corpus.iter().copied().cycle().take(30), 300).unwrap();
        let tokens = |q: &str| prompt_tokens(&text, q, ArgumentView::Placeholder, None).unwrap();
        let arg = text.token_id(ARGUMENT_TOKEN).unwrap();
        // Questions that differ only in their arguments read the same.
        let (a, b) = (tokens("What is 2 + 3?"), tokens("What is 417.5 + -9?"));
        assert_eq!(a.ids, b.ids);
        assert_eq!(a.arguments.iter().map(|&i| a.ids[i]).collect::<Vec<_>>(), vec![arg, arg]);
        let (c, d) = (
            tokens("How many words are in \"a b\"?"),
            tokens("How many words are in \"WebAssembly runs inside a secure sandbox\"?"),
        );
        assert_eq!(c.ids, d.ids);
        assert_eq!(c.arguments.len(), 1);
        assert_eq!(
            text.decode(&c.ids[c.wording.clone()]).unwrap(),
            "How many words are in \"<|arg|>\"?"
        );
        // As tokens, the same questions differ.
        let shown = |q: &str| prompt_tokens(&text, q, ArgumentView::Tokens, None).unwrap().ids;
        assert_ne!(shown("What is 2 + 3?"), shown("What is 417.5 + -9?"));
        // A tokenizer without the placeholder is refused, naming the key.
        let json = std::env::temp_dir().join(format!("wmx-noarg-{}.json", std::process::id()));
        text.save(&json).unwrap();
        let raw = std::fs::read_to_string(&json).unwrap().replace("<|arg|>", "<|xyz|>");
        std::fs::write(&json, raw).unwrap();
        let other = TextTokenizer::from_file(&json).unwrap();
        std::fs::remove_file(&json).ok();
        let err = prompt_tokens(&other, "What is 2 + 3?", ArgumentView::Placeholder, None).err().unwrap();
        assert!(err.to_string().contains("model.arguments"), "{err}");
    }
}
