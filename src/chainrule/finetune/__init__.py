"""Fine-tuning pre-trained models: freezing, LoRA adapters, and ``chainrule finetune`` runs.

    from chainrule.finetune import apply_lora, merge_lora, train_last, trainable_parameters
    model, tok = chainrule.pretrained.from_pretrained("smollm2")
    apply_lora(model, rank=8, alpha=16, targets=("q_proj", "v_proj"))
    opt = chainrule.optim.AdamW(trainable_parameters(model), lr=1e-3)
"""

from .freeze import freeze as freeze
from .freeze import parameter_counts as parameter_counts
from .freeze import train_last as train_last
from .freeze import train_norms_and_head as train_norms_and_head
from .freeze import trainable_parameters as trainable_parameters
from .freeze import unfreeze as unfreeze
from .lora import LoRALinear as LoRALinear
from .lora import apply_lora as apply_lora
from .lora import lora_state_dict as lora_state_dict
from .lora import merge_lora as merge_lora
