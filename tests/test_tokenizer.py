from transformers import AutoTokenizer, XLMRobertaTokenizerFast


def test_tiny_tokenizer_has_xlmr_layout(tiny_tokenizer, tmp_path):
    tok = tiny_tokenizer
    # fairseq layout of XLM-R: <s>=0 <pad>=1 </s>=2 <unk>=3, <mask> last
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.mask_token_id == len(tok) - 1
    # 2000 SentencePiece ids (3 of them <unk>/<s>/</s>) shifted by one for <pad>, plus <mask>
    assert len(tok) == 2002
    enc = tok("Hello world", return_offsets_mapping=True)
    assert enc["input_ids"][0] == 0 and enc["input_ids"][-1] == 2
    # offsets map every piece back into the text: the pieces cover "Hello world" without gaps
    spans = [o for o in enc["offset_mapping"] if o != (0, 0)]
    assert spans[0][0] == 0 and spans[-1][1] == len("Hello world")
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(again, XLMRobertaTokenizerFast)
    assert again("Hallo Welt, 你好")["input_ids"] == tok("Hallo Welt, 你好")["input_ids"]
