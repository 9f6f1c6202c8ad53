//! Answers restate their computed values: values of every shape the sandbox
//! returns — negative numbers and zero, decimals at the experiment's rounding, large
//! integers, yes/no — driven through the half of the answer path that states a
//! value, with an untrained model whose own choices are random. Under the copy head
//! every answer states exactly its value; the same model writing values as tokens
//! does not, which is what the check can catch.

use wmx::backend::Cpu;
use wmx::config::{AnswerValue, Experiment};
use wmx::curriculum::rng::Rng;
use wmx::infer::{Answerer, Provenance};
use wmx::model::world::{CopyAction, WorldModel};
use wmx::sandbox::{Arg, Sandbox, bind, format_value_places};
use wmx::tokenize::TextTokenizer;
use wmx::tokenize::wat::WatVocab;

const QUESTIONS: [&str; 6] = [
    "What is 4127 minus 6350?",
    "What is (9 + 4) - 2?",
    "Is 91 a prime number?",
    "What is the sum of the digits of 4719?",
    "Mina had 12 stickers. Her brother gave her 5 more. How many stickers does Mina have now?",
    "Divide 22 by 7.",
];

/// Values of every shape: `count` of each kind.
fn values(count: usize, rng: &mut Rng) -> Vec<f64> {
    let mut out = vec![0.0, -0.0, 1.0, -1.0, 1e14, -123456789012.0, 0.00001, -0.00004, 2.0 / 3.0, -22.0 / 7.0];
    for _ in 0..count {
        let digits = rng.range(1, 12) as i32;
        let int = (rng.unit() * 10f64.powi(digits)).floor();
        out.push(-int);
        out.push(int);
        let places = rng.range(1, 6) as i32;
        let decimal = ((rng.unit() - 0.5) * 10f64.powi(rng.range(1, 6) as i32) * 10f64.powi(places)).round() / 10f64.powi(places);
        out.push(decimal);
        out.push(if rng.unit() < 0.5 { 0.0 } else { 1.0 });
    }
    out
}

/// Every number and yes/no the text states, written at `places` decimals.
fn stated(text: &str, places: u32) -> Vec<String> {
    let mut out: Vec<String> = bind(text)
        .into_iter()
        .filter_map(|a| match a {
            Arg::Number(n) => Some(format_value_places(n, places)),
            Arg::Text(_) => None,
        })
        .collect();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        match word.to_lowercase().as_str() {
            "yes" | "true" => out.push("1".into()),
            "no" | "false" => out.push("0".into()),
            _ => {}
        }
    }
    out
}

fn restated_share(e: &Experiment, model: &WorldModel<Cpu>, text: &TextTokenizer, values: &[f64]) -> f64 {
    let wat = WatVocab::new();
    let sandbox = Sandbox::new(&e.sandbox).unwrap();
    let answerer = Answerer::from_experiment(e, text, &wat, &sandbox);
    let places = e.eval.decimals.unwrap_or(4);
    let questions: Vec<&str> = (0..values.len()).map(|i| QUESTIONS[i % QUESTIONS.len()]).collect();
    let wanted: Vec<Option<f64>> = values.iter().map(|&v| Some(v)).collect();
    let answers = answerer.answer_values(model, &questions, &wanted, &Default::default()).unwrap();
    let mut restated = 0;
    for (answer, &value) in answers.iter().zip(values) {
        let shown = format_value_places(value, places);
        let says = stated(&answer.text, places);
        let exact = !says.is_empty() && says.iter().all(|s| *s == shown);
        assert_eq!(answer.provenance == Provenance::Restated, exact, "{value}: {:?}", answer.text);
        if exact {
            restated += 1;
        }
        if e.model.answer == AnswerValue::Copy {
            assert!(exact, "{value} ({shown}) stated as {:?}", answer.text);
            assert!(answer.copied.is_some(), "{value}: {:?}", answer.text);
            if answer.copied == Some(CopyAction::Truth) {
                assert!(value == 0.0 || value == 1.0, "{value}: {:?}", answer.text);
            }
        }
    }
    restated as f64 / values.len() as f64
}

#[test]
fn every_computed_value_of_every_shape_is_restated() {
    let mut rng = Rng::new(11);
    let values = values(20, &mut rng);
    let corpus: Vec<String> = QUESTIONS
        .iter()
        .map(|q| format!("{q} <computed>-12.5</computed> The answer is -12.5. Yes. No. True or false? not now"))
        .collect();
    let text = TextTokenizer::train_bpe(corpus.iter().map(String::as_str).cycle().take(60), 400).unwrap();
    let device = Default::default();
    let mut seeds = Vec::new();
    for seed in [1] {
        let mut e: Experiment = toml::from_str(&format!("seed = {seed}")).unwrap();
        e.model.hidden_size = 64;
        e.model.intermediate_size = 128;
        e.model.num_hidden_layers = 3;
        e.fusion.layers = vec![1, 2];
        e.wat.hidden_size = 32;
        e.wat.intermediate_size = 64;
        <Cpu as burn::tensor::backend::Backend>::seed(&device, seed);
        let model = WorldModel::<Cpu>::from_experiment(&e, text.vocab_size(), &WatVocab::new(), &device).unwrap();
        assert!(model.copy.is_some());
        assert_eq!(restated_share(&e, &model, &text, &values), 1.0);
        // Rounded to two decimals.
        let mut two = e.clone();
        two.eval.decimals = Some(2);
        assert_eq!(restated_share(&two, &model, &text, &values), 1.0);
        // The same weights writing the value as tokens: the check catches what
        // an untrained model says.
        let mut tokens = e.clone();
        tokens.model.answer = AnswerValue::Tokens;
        seeds.push(restated_share(&tokens, &model, &text, &values));
    }
    eprintln!("written as tokens, restated: {seeds:?}");
    assert!(seeds.iter().all(|&s| s < 0.5), "tokens restated {seeds:?}");
}
