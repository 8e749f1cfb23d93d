"""Recurrent cells and their registry. Import a new cell module here to register it."""

from rnnlab.cells.base import Cell, HiddenCarry, LSTMCarry
from rnnlab.cells.gru import GRU
from rnnlab.cells.indrnn import IndRNN
from rnnlab.cells.lstm import CIFG, LSTM, FGRCarry
from rnnlab.cells.mgu import MGU
from rnnlab.cells.minrnn import MinGRU, MinLSTM
from rnnlab.cells.peephole import PeepholeLSTM
from rnnlab.cells.registry import CELLS, cell_schema, get_cell_class, make_cell, register_cell
from rnnlab.cells.rnn import SimpleRNN

__all__ = [
    "CELLS", "CIFG", "GRU", "LSTM", "MGU", "Cell", "FGRCarry", "HiddenCarry", "IndRNN",
    "LSTMCarry", "MinGRU", "MinLSTM", "PeepholeLSTM", "SimpleRNN",
    "cell_schema", "get_cell_class", "make_cell", "register_cell",
]
