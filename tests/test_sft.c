// Fine-tuning: the SFT row layout, LLaDA's SFT loss (prompt never masked, each example
// normalised by its answer length) checked against a hand computation, the AR response-only
// loss, and multiple-choice scoring on tiny models trained to memorise the items.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "tests/testutil.h"
#include "tokenizer/chat.h"
#include "eval/choices.h"
#include "eval/eval.h"
#include "train/objective.h"
#include "dataset/sft.h"
#include "train/trainer.h"

static const char *write_text(const char *name, const char *text) {
    return write_temp_file(name, text, strlen(text));
}

START_TEST(test_rows_layout) {
    Tokenizer t;
    tokenizer_init_bytes(&t);
    const char *path = write_text("sft.jsonl", "{\"prompt\": \"2+2=\", \"response\": \"4\"}\n\n"
        "{\"response\": \"a very long answer indeed\", \"prompt\": \"q\"}\n");
    SftData d;
    Error err;
    ck_assert_msg(sft_load(&d, path, &t, 12, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(d.n, 2);
    // BOS <|prompt|> 2 + 2 = <|response|> 4 EOS EOS EOS EOS
    int want[12] = {t.bos_id, t.prompt_id, '2', '+', '2', '=', t.response_id, '4',
                    t.eos_id, t.eos_id, t.eos_id, t.eos_id};
    for (int i = 0; i < 12; i++) ck_assert_int_eq(d.tokens[i], want[i]);
    ck_assert_int_eq(d.prompt_len[0], 7);
    ck_assert_int_eq(d.answer_len[0], 2);  // "4" and the first EOS
    // the second response is cut to fit: 4 prompt tokens, 7 response tokens, one EOS
    ck_assert_int_eq(d.prompt_len[1], 4);
    ck_assert_int_eq(d.answer_len[1], 8);
    ck_assert_int_eq(d.tokens[12 + 11], t.eos_id);
    ck_assert_int_eq(d.truncated, 1);
    sft_free(&d);
    // errors name the line
    path = write_text("bad.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": 3}\n");
    ck_assert(sft_load(&d, path, &t, 12, &err) == -1);
    ck_assert_msg(strstr(err.msg, "bad.jsonl:2: member \"prompt\" is not a string"), "%s", err.msg);
    path = write_text("long.jsonl", "{\"prompt\": \"0123456789\", \"response\": \"b\"}\n");
    ck_assert(sft_load(&d, path, &t, 12, &err) == -1);
    ck_assert_msg(strstr(err.msg, "long.jsonl:1: the prompt is 13 tokens"), "%s", err.msg);
    path = write_text("nores.jsonl", "{\"prompt\": \"a\"}\n");
    ck_assert(sft_load(&d, path, &t, 12, &err) == -1);
    ck_assert_msg(strstr(err.msg, "nores.jsonl:1: no \"response\" member"), "%s", err.msg);
}
END_TEST

enum { B = 2, T = 10, MASK = 9 };
static const int rows[B * T] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 0,   // prompt of 3
                                1, 2, 3, 4, 5, 6, 0, 0, 0, 0};  // prompt of 5
static const int prompt_len[B] = {3, 5}, answer_len[B] = {6, 2};

START_TEST(test_prompt_never_masked) {
    Rng rng;
    rng_seed(&rng, 1);
    int inputs[B * T], targets[B * T];
    float weights[B * T];
    long masked = 0, possible = 0;
    for (int trial = 0; trial < 2000; trial++) {
        sft_mdm_batch(rows, prompt_len, B, T, MASK, 1e-3f, 0.0f, &rng, inputs, targets, weights,
                      NULL);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < T; i++) {
                int n = b * T + i;
                ck_assert_int_eq(targets[n], rows[n]);
                if (i < prompt_len[b]) {
                    ck_assert_int_eq(inputs[n], rows[n]);
                    ck_assert(weights[n] == 0.0f);
                } else {
                    masked += inputs[n] == MASK;
                    possible++;
                    ck_assert((inputs[n] == MASK) == (weights[n] > 0.0f));
                }
            }
    }
    // t ~ U(0, 1): about half of the answer positions are masked
    printf("  %.3f of answer positions masked, none of the prompt\n", (double)masked / possible);
    ck_assert(fabs((double)masked / possible - 0.5) < 0.02);
    // with cfg drop, some prompts are masked wholesale, still with no loss
    int dropped = 0;
    for (int trial = 0; trial < 1000; trial++) {
        sft_mdm_batch(rows, prompt_len, B, T, MASK, 1e-3f, 0.3f, &rng, inputs, targets, weights,
                      NULL);
        for (int b = 0; b < B; b++) {
            int all = 1;
            for (int i = 0; i < prompt_len[b]; i++) {
                all &= inputs[b * T + i] == MASK;
                ck_assert(weights[b * T + i] == 0.0f);
            }
            dropped += all;
        }
    }
    printf("  cfg drop 0.3: %.3f of prompts masked\n", dropped / 2000.0);
    ck_assert(fabs(dropped / 2000.0 - 0.3) < 0.04);
}
END_TEST

static Model tiny_model(int causal) {
    ModelConfig c = model_config_default();
    c.n_layer = 1, c.n_head = 2, c.d_model = 8, c.d_ff = 16, c.vocab_size = 10;
    c.mask_token_id = MASK, c.seq_len = T, c.causal = causal;
    Model m;
    Error err;
    ck_assert_msg(model_create(&m, &c, &backend_cpu, B, 0, &err) == 0, "%s", err.msg);
    fill_normal(m.params, m.n_params, 3, 0.5f);
    return m;
}

// The loss the trainer minimises, against the formula written out: for each example, the
// sum of CE / t over its masked answer positions divided by its answer length (T - prompt),
// then the mean over the two examples.
START_TEST(test_mdm_sft_loss_by_hand) {
    Model m = tiny_model(0);
    Rng rng;
    rng_seed(&rng, 7);
    int inputs[B * T], targets[B * T];
    float weights[B * T], t[B];
    sft_mdm_batch(rows, prompt_len, B, T, MASK, 1e-3f, 0.0f, &rng, inputs, targets, weights, t);
    model_forward(&m, inputs, B, T);
    float loss = model_loss(&m, targets, weights);
    double hand = 0.0;
    for (int b = 0; b < B; b++) {
        double sum = 0.0;
        int n_masked = 0;
        for (int i = prompt_len[b]; i < T; i++)
            if (inputs[b * T + i] == MASK) sum += m.host_losses[b * T + i] / t[b], n_masked++;
        hand += sum / (T - prompt_len[b]) / B;
        printf("  example %d: t %.3f, %d of %d answer tokens masked\n", b, t[b], n_masked,
               T - prompt_len[b]);
    }
    printf("  MDM SFT loss %.6f, by hand %.6f\n", loss, hand);
    ck_assert(t[0] != t[1]);  // the per-example normalisation matters
    ck_assert_double_eq_tol(loss, hand, 1e-5 * hand);
    model_free(&m);
}
END_TEST

// AR: the mean CE over each example's answer (response + first EOS), averaged over examples.
START_TEST(test_ar_sft_loss_by_hand) {
    Model m = tiny_model(1);
    int inputs[B * (T - 1)], targets[B * (T - 1)];
    float weights[B * (T - 1)];
    sft_ar_batch(rows, prompt_len, answer_len, B, T, inputs, targets, weights);
    model_forward(&m, inputs, B, T - 1);
    float loss = model_loss(&m, targets, weights);
    double hand = 0.0;
    for (int b = 0; b < B; b++) {
        double sum = 0.0;
        // position i predicts token i + 1; the answer is tokens p .. p + answer_len - 1
        for (int tok = prompt_len[b]; tok < prompt_len[b] + answer_len[b]; tok++) {
            ck_assert_int_eq(targets[b * (T - 1) + tok - 1], rows[b * T + tok]);
            sum += m.host_losses[b * (T - 1) + tok - 1];
        }
        hand += sum / answer_len[b] / B;
    }
    int counted = 0;
    for (int n = 0; n < B * (T - 1); n++) counted += weights[n] > 0.0f;
    printf("  AR SFT loss %.6f, by hand %.6f (%d positions counted)\n", loss, hand, counted);
    ck_assert_int_eq(counted, answer_len[0] + answer_len[1]);
    ck_assert_double_eq_tol(loss, hand, 1e-5 * hand);
    model_free(&m);
}
END_TEST

// Eight question/answer items; the model is fine-tuned on the right answers only.
static const char *const questions[8][4] = {
    {"red+blue", "purple", "orange", "green"},  {"sun", "day", "night", "rain"},
    {"cat", "meow", "woof", "moo"},             {"ice", "cold", "hot", "warm"},
    {"one+one", "two", "three", "four"},        {"up", "down", "left", "in"},
    {"bird", "fly", "swim", "dig"},             {"bread", "bake", "boil", "fry"},
};

static const char *write_items(char *sft_path, size_t cap) {
    char sft[4096] = "", items[4096] = "";
    for (int q = 0; q < 8; q++) {
        char line[256];
        snprintf(line, sizeof line, "{\"prompt\": \"%s\", \"response\": \"%s\"}\n",
                 questions[q][0], questions[q][1]);
        strcat(sft, line);
        // the right answer sits at a different index in each item
        int answer = q % 3;
        const char *c[3];
        for (int k = 0; k < 3; k++) c[(answer + k) % 3] = questions[q][1 + k];
        snprintf(line, sizeof line, "{\"prompt\": \"%s\", \"choices\": [\"%s\", \"%s\", \"%s\"], "
                 "\"answer\": %d}\n", questions[q][0], c[0], c[1], c[2], answer);
        strcat(items, line);
    }
    snprintf(sft_path, cap, "%s", write_text("items_sft.jsonl", sft));
    return write_text("items.jsonl", items);
}

static void memorise_and_score(Objective objective) {
    char sft_path[512];
    const char *items = write_items(sft_path, sizeof sft_path);
    Tokenizer t;
    tokenizer_init_bytes(&t);
    SftData d;
    Model m;
    Trainer tr;
    Error err;
    tiny_sft_run(&m, &tr, &d, sft_path, objective, 24, 300);
    ChoiceOptions co = {.chat = 1, .mc = 16, .cfg = 0.0f, .seed = 7};
    ChoiceResult before, after;
    ck_assert_msg(score_choices(&m, &t, items, &co, &before, &err) == 0, "%s", err.msg);
    StepStats st = {0};
    for (int s = 0; s < tr.tc.steps; s++) st = trainer_step(&tr);
    ck_assert_msg(score_choices(&m, &t, items, &co, &after, &err) == 0, "%s", err.msg);
    int causal = objective == OBJECTIVE_AR;
    printf("  %s: accuracy %d/8 before fine-tuning, %d/8 after %lld steps (loss %.4f)\n",
           causal ? "AR " : "MDM", before.correct, after.correct, (long long)tr.tc.steps, st.loss);
    ck_assert_int_eq(after.items, 8);
    ck_assert_int_eq(after.correct, 8);
    EvalResult fit;
    ck_assert_msg(eval_sft(&m, &d, 0, 16, 3, &fit, &err) == 0, "%s", err.msg);
    // The training loss is per position of the rows it scores (AR: the answer; MDM: answer and
    // padding); in nats per answer token the same fit is at most loss x positions / answer.
    double per_answer = 0.0;
    for (int i = 0; i < d.n; i++) {
        double positions = causal ? d.answer_len[i] : d.T - d.prompt_len[i];
        per_answer = fmax(per_answer, st.loss * positions / d.answer_len[i]);
    }
    printf("  %s: SFT likelihood of its own training rows %.4f nats/token (%lld tokens), "
           "training loss as nats per answer token <= %.4f\n", causal ? "AR " : "MDM",
           fit.nats_per_token, (long long)fit.tokens, per_answer);
    // scored on rows unlike the ones it learned (no EOS padding), the MDM gave 3.6 here
    ck_assert(fit.nats_per_token < 2.0 * per_answer + 0.05);
    if (!causal) {  // guidance keeps the memorised answers on top
        co.cfg = 1.0f;
        ck_assert(score_choices(&m, &t, items, &co, &after, &err) == 0);
        printf("  MDM with cfg 1.0: %d/8\n", after.correct);
        ck_assert_int_eq(after.correct, 8);
    }
    tiny_sft_free(&m, &tr, &d);
}

START_TEST(test_choices_mdm) { memorise_and_score(OBJECTIVE_MDM); }
END_TEST

START_TEST(test_choices_ar) { memorise_and_score(OBJECTIVE_AR); }
END_TEST

START_TEST(test_bad_items) {
    Tokenizer t;
    tokenizer_init_bytes(&t);
    Model m = tiny_model(0);
    ChoiceOptions co = {.chat = 0, .mc = 2, .seed = 1};
    ChoiceResult r;
    Error err;
    const char *path = write_text("bad_items.jsonl", "{\"prompt\": \"a\", \"choices\": [\"b\", \"c\"], \"answer\": 1}\n"
        "{\"prompt\": \"a\", \"choices\": [\"b\", \"c\"], \"answer\": 2}\n");
    ck_assert(score_choices(&m, &t, path, &co, &r, &err) == -1);
    ck_assert_msg(strstr(err.msg, "bad_items.jsonl:2: answer 2 is not an index into the 2 choices"),
                  "%s", err.msg);
    path = write_text("bad_items2.jsonl", "{\"prompt\": \"a\", \"choices\": \"b\", \"answer\": 0}\n");
    ck_assert(score_choices(&m, &t, path, &co, &r, &err) == -1);
    ck_assert_msg(strstr(err.msg, "bad_items2.jsonl:1: member \"choices\" is not an array"), "%s",
                  err.msg);
    model_free(&m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("sft");
    TCase *tc = tcase_create("fine-tuning");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_rows_layout);
    tcase_add_test(tc, test_prompt_never_masked);
    tcase_add_test(tc, test_mdm_sft_loss_by_hand);
    tcase_add_test(tc, test_ar_sft_loss_by_hand);
    tcase_add_test(tc, test_choices_mdm);
    tcase_add_test(tc, test_choices_ar);
    tcase_add_test(tc, test_bad_items);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
